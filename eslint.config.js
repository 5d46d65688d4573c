// Lint: type-aware typescript-eslint, no warnings allowed, and the layer rules
// of docs/architecture.md:
//
//   core  <-  sys  <-  backing, kvm  <-  conversion, iommu  <-  guest, workload, report  <-  cli
//
// A layer imports only from layers to its left. core touches neither node:*
// nor the FFI; only sys imports the FFI library (koffi).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

const layers = [
  ['core'],
  ['sys'],
  ['backing', 'kvm'],
  ['conversion', 'iommu'],
  ['guest', 'workload', 'report'],
  ['cli'],
];
const allFolders = layers.flat();
const rankOf = (folder) => layers.findIndex((l) => l.includes(folder));

// One zone per (layer, forbidden source): a folder may not import any folder of
// the same or a higher rank, except itself and the siblings its rank allows.
const sameRankImports = { kvm: ['backing'], workload: ['guest'], report: ['workload'] };
const zones = allFolders.flatMap((folder) =>
  allFolders
    .filter((other) => other !== folder)
    .filter((other) => rankOf(other) > rankOf(folder)
      || (rankOf(other) === rankOf(folder) && !(sameRankImports[folder] ?? []).includes(other)))
    .map((other) => ({
      target: `./src/${folder}`,
      from: `./src/${other}`,
      message: `layer '${folder}' must not import '${other}' (see docs/architecture.md)`,
    })));

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  ...tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.js', 'scripts/*.js', '.ci/*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      'import-x/no-cycle': 'error',
      'import-x/no-self-import': 'error',
      'import-x/no-restricted-paths': ['error', { zones }],
      'no-restricted-imports': ['error', { paths: [{ name: 'koffi', message: 'only src/sys may use the FFI' }] }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }],
      }],
      eqeqeq: 'error',
      'no-empty': 'error',
      'prefer-const': 'error',
    },
  },
  {
    // core: pure logic, no Node.js modules.
    files: ['src/core/**/*.ts'],
    ignores: ['src/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'koffi', message: 'only src/sys may use the FFI' }],
        patterns: [{ group: ['node:*'], message: 'src/core is pure logic: no Node.js modules' }],
      }],
    },
  },
  {
    files: ['src/sys/**/*.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    // Programs that talk to people or to CI.
    files: ['src/cli/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.js', '.ci/**/*.js'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['scripts/**/*.js', '.ci/**/*.js', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
