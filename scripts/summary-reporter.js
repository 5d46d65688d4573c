// node:test reporter: one line of totals, preceded by every skipped test with
// its reason, so a skip is never mistaken for a pass.
export default async function* summaryReporter(source) {
  let passed = 0;
  let failed = 0;
  let todo = 0;
  const skipped = [];
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { data } = event;
    if (data.details?.type === 'suite') continue;
    if (data.skip !== undefined && data.skip !== false) {
      skipped.push(`  skipped: ${data.name}: ${typeof data.skip === 'string' ? data.skip : '(no reason given)'}`);
    } else if (data.todo !== undefined && data.todo !== false) {
      todo++;
    } else if (event.type === 'test:pass') {
      passed++;
    } else {
      failed++;
    }
  }
  const total = passed + failed + skipped.length + todo;
  const lines = ['', ...skipped];
  lines.push(`guestmem tests: ${total} tests, ${passed} passed, ${failed} failed, ${skipped.length} skipped${todo ? `, ${todo} todo` : ''}`);
  yield `${lines.join('\n')}\n`;
}
