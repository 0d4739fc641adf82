// `npm run deps`: the import graph of lib/ has no circle, type-only imports included (TypeScript erases those, but
// a circle of types is still two modules that cannot be read, or moved, one without the other).
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A module that imports, through others, itself (types included): break the circle by moving what both need',
      from: { path: '^lib/' },
      to: { circular: true }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // type-only imports count: they make circles as much as value imports do
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] }
  }
}
