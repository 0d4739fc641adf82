// Standard style (neostandard) for JavaScript and TypeScript, plus a line-length limit: 120 characters.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: [
      'dist/**', 'coverage/**', '.tap/**', 'bench/node_modules/**', 'bench/results/**', '.samples/**'
    ]
  }),
  {
    rules: {
      // `void promise` marks a promise deliberately not awaited (its rejection is handled where it is made)
      'no-void': ['error', { allowAsStatement: true }],
      // loops here wait (await) for counters that event handlers advance, which this rule cannot see
      'no-unmodified-loop-condition': 'off',
      '@stylistic/max-len': ['error', {
        code: 120,
        // an address cannot be wrapped; a message stays on one line, so that grep finds what a log printed
        ignoreUrls: true,
        ignoreStrings: true,
        ignoreTemplateLiterals: true,
        ignoreRegExpLiterals: true
      }]
    }
  },
  {
    // the benchmark reports render whole Markdown rows and SVG elements from one template each
    files: ['bench/**'],
    rules: {
      '@stylistic/max-len': ['error', {
        code: 120, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true
      }]
    }
  }
]
