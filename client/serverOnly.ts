// What `quire/bookie`, `quire/server`, `quire/cli/...` and the other server subpaths of the client
// package load (its package.json maps them here, see pkg/pack.mjs): one QuireError saying where
// those parts are, instead of a missing-module error or a native module failing to load.

import { QuireError } from '../machines/errors.ts'

throw new QuireError('SERVER_ONLY', "this part of Quire is not in the 'quire' client package: bookies, node roles, the quire CLI, the admin API and the inspector are in 'quire-server' (npm install quire-server); a client app imports only from 'quire', e.g. import { connect } from 'quire'")
