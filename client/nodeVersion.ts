// Refuses an unsupported Node.js when the client is imported: client/index.ts imports this module
// first, so an app on Node.js 18 gets one QuireError naming the versions instead of a failure deep
// inside a dependency. MIN_NODE_MAJOR must equal package.json's engines.node (">=20"), which makes
// npm warn at install time; test/e2e/package.test.ts checks that they agree.

import { QuireError } from '../machines/errors.ts'

export const MIN_NODE_MAJOR = 20

/** Throws UNSUPPORTED_NODE when `version` (as in process.versions.node) is below MIN_NODE_MAJOR. */
export function checkNodeVersion(version: string): void {
  const major = Number(version.split('.')[0])
  if (!(major >= MIN_NODE_MAJOR)) {
    throw new QuireError('UNSUPPORTED_NODE', `quire needs Node.js ${MIN_NODE_MAJOR} or newer; this is Node.js ${version}`, { version, required: `>=${MIN_NODE_MAJOR}` })
  }
}

checkNodeVersion(process.versions.node)
