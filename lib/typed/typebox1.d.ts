// The one place that reads the types of `typebox` (1.x): an optional peer dependency, so a program that has only
// @sinclair/typebox, or no TypeBox at all, must still compile these declarations, `skipLibCheck: false` included.
// Where the package is missing, `StaticOfTypeBox1` is `any` and no schema of it can reach the types that use it.
// A hand-written declaration file, because tsc drops the comment below from the declarations it emits; the build
// copies it next to them (scripts/copy-declarations.js).

// @ts-ignore typebox may not be installed (see above)
export type { Static as StaticOfTypeBox1 } from 'typebox'
