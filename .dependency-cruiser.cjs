/**
 * Import rules that need the whole module graph (see eslint.config.js for the
 * per-layer rules):
 * - no import cycles, type-only imports included;
 * - shipped code (src/, not its tests) imports no devDependency, so an
 *   install without dev dependencies still runs.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle makes load order matter and the layers meaningless.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-dev-dependency-in-src',
      severity: 'error',
      comment: 'Shipped code must run without devDependencies.',
      from: { path: '^src/', pathNot: '\\.test\\.ts$' },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'Every import resolves.',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
