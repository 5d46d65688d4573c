// Lint: type-aware typescript-eslint, no warnings allowed, and the layer rules
// of docs/architecture.md:
//
//   core  <-  sys  <-  backing, kvm  <-  conversion, iommu  <-  guest, workload, report  <-  cli
//
// A layer imports only from layers to its left (and the same-rank neighbours
// listed below). core touches neither node:* nor the FFI; only sys imports
// the FFI library (koffi). Every cross-layer import in src/ is relative and
// one folder deep ('../<layer>/file.js'), so the rules are import-path
// patterns of the built-in no-restricted-imports rule. Import cycles are
// found by dependency-cruiser (.dependency-cruiser.cjs), the second half of
// `npm run lint`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layers = [
  ['core'],
  ['sys'],
  ['backing', 'kvm'],
  ['conversion', 'iommu'],
  ['guest', 'workload', 'report'],
  ['cli'],
];
const sameRankImports = { kvm: ['backing'], workload: ['guest'], report: ['workload'] };
const allFolders = layers.flat();
const rankOf = (folder) => layers.findIndex((l) => l.includes(folder));

/** The no-restricted-imports options for files of one layer. */
function restrictionsFor(folder) {
  const forbidden = allFolders.filter((other) => other !== folder
    && (rankOf(other) > rankOf(folder)
      || (rankOf(other) === rankOf(folder) && !(sameRankImports[folder] ?? []).includes(other))));
  const patterns = forbidden.map((other) => ({
    group: [`../${other}/*`, `../${other}/**`],
    message: `layer '${folder}' must not import '${other}' (see docs/architecture.md)`,
  }));
  if (folder === 'core') patterns.push({ group: ['node:*'], message: 'src/core is pure logic: no Node.js modules' });
  const paths = folder === 'sys' ? [] : [{ name: 'koffi', message: 'only src/sys may use the FFI' }];
  return ['error', { paths, patterns }];
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  ...tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.js', '*.cjs', 'scripts/*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      'no-restricted-imports': ['error', { paths: [{ name: 'koffi', message: 'only src/sys may use the FFI' }] }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }],
      }],
      'no-console': 'error',
      eqeqeq: 'error',
      'no-empty': 'error',
      'prefer-const': 'error',
    },
  },
  // One block per layer: its import restrictions.
  ...allFolders.map((folder) => ({
    files: [`src/${folder}/**/*.ts`],
    rules: { 'no-restricted-imports': restrictionsFor(folder) },
  })),
  {
    // core's own tests may use node:test and node:assert.
    files: ['src/core/**/*.test.ts'],
    rules: { 'no-restricted-imports': restrictionsFor('sys') },
  },
  {
    // The layout test checks sys/'s koffi types against gcc.
    files: ['test/sys/**/*.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    // Programs that talk to people or to CI.
    files: ['src/cli/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.js'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['scripts/**/*.js', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
  },
);
