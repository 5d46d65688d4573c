/**
 * Every export of the public API (src/index.ts) carries TSDoc, and every
 * member of an exported interface or class that is public does too.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function undocumented(): string[] {
  const configPath = join(root, 'tsconfig.json');
  const config = ts.getParsedCommandLineOfConfigFile(configPath, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  assert.ok(config);
  const program = ts.createProgram({ rootNames: [join(root, 'src', 'index.ts')], options: config.options });
  const checker = program.getTypeChecker();
  const index = program.getSourceFile(join(root, 'src', 'index.ts'));
  assert.ok(index);
  const moduleSymbol = checker.getSymbolAtLocation(index);
  assert.ok(moduleSymbol);
  const missing: string[] = [];
  const documented = (symbol: ts.Symbol): boolean => symbol.getDocumentationComment(checker).length > 0
    || symbol.getJsDocTags(checker).length > 0;
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    if (!documented(symbol)) missing.push(exported.name);
    // Public members of classes and interfaces.
    if (symbol.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Interface)) {
      for (const decl of symbol.declarations ?? []) {
        if (!ts.isClassDeclaration(decl) && !ts.isInterfaceDeclaration(decl)) continue;
        for (const member of decl.members) {
          const modifiers = ts.canHaveModifiers(member) ? ts.getModifiers(member) ?? [] : [];
          if (modifiers.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword || m.kind === ts.SyntaxKind.ProtectedKeyword)) continue;
          if (ts.isConstructorDeclaration(member) || member.name === undefined || ts.isPrivateIdentifier(member.name)) continue;
          const memberSymbol = checker.getSymbolAtLocation(member.name);
          if (memberSymbol && !documented(memberSymbol) && !isOverride(member)) missing.push(`${exported.name}.${member.name.getText()}`);
        }
      }
    }
  }
  return missing;
}

function isOverride(member: ts.ClassElement | ts.TypeElement): boolean {
  // Implementations of a documented interface member inherit its documentation.
  return ts.canHaveModifiers(member) && (ts.getModifiers(member) ?? []).some((m) => m.kind === ts.SyntaxKind.OverrideKeyword);
}

describe('public API', () => {
  it('documents every export and every public member', () => {
    assert.deepEqual(undocumented(), []);
  });
});
