import { connect } from './client/index.ts'
const c = await connect({ servers: '127.0.0.1:14240', auth: { user: 'mallory', pass: 'm-pw' } })
const w = await c.createLedger({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 })
const t = Date.now()
try { await w.append('x'); console.log('appended?!') } catch (e: any) { console.log('append', e.code, e.message, Date.now() - t, 'ms') }
await c.close()
