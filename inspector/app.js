// The inspector page: follows /events (server-sent events) and redraws, at most once a frame,
// the actors grouped by kind, the selected actor's state chart, context and last events, and the
// bookie and ledger views. Plain browser JavaScript, nothing loaded from elsewhere.
//
// Liveness: every actor republishes itself every `beaconMs` (actors/inspect.ts). One not heard of
// for three beacons is silent; a bookie that is silent, stopped, gone from the registrations or
// whose heartbeat is late is shown dead.

import { activeStateIds, drawChart } from './chart.js'

const KIND_ORDER = ['bookie', 'writer', 'reader', 'recovery', 'auditor', 'replicator', 'bookie-ledger']
const SILENT_BEACONS = 3
const SILENT_MS_MIN = 5000
const HISTORY_KEPT = 12

const ui = {
  actors: new Map(), // key -> {msg, seen, history: [{state, at}]}
  defs: new Map(), // kind -> definition
  charts: new Map(), // kind -> {element, highlight}
  cluster: null,
  clusterError: null,
  selected: null,
  offsetMs: 0,
  connected: false,
  deadBookies: new Set(),
  openKinds: new Set(KIND_ORDER.filter((k) => k !== 'bookie-ledger')),
}

const $ = (id) => document.getElementById(id)
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
const serverNow = () => Date.now() + ui.offsetMs

/** `'open'` → open; `{leader: {lease: 'valid', work: 'marking'}}` → leader(lease.valid, work.marking). */
function stateText(v) {
  if (v === null || v === undefined) return '–'
  if (typeof v === 'string') return v
  return Object.entries(v).map(([k, sub]) => (typeof sub === 'string' ? `${k}.${sub}` : `${k}(${stateText(sub)})`)).join(', ')
}

/** live, silent (no beacon for a while) or finished, from the actor's own messages. */
function heard(a) {
  if (a.msg.status !== 'active') return 'finished'
  const limit = Math.max(SILENT_MS_MIN, SILENT_BEACONS * (a.msg.beaconMs || 2000))
  return serverNow() - a.seen > limit ? 'silent' : 'live'
}

/** As `heard`, and `dead` for a live bookie (or one of its ledgers) the bookie view counts dead. */
function liveness(a) {
  const h = heard(a)
  if (h !== 'live') return h
  const bookie = a.msg.kind === 'bookie' ? a.msg.id : a.msg.kind === 'bookie-ledger' ? a.msg.id.slice(0, a.msg.id.lastIndexOf('.')) : null
  return bookie !== null && ui.deadBookies.has(bookie) ? 'dead' : 'live'
}

function ago(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`
  return `${Math.round(ms / 60_000)} min`
}

function value(v) {
  if (v === null || v === undefined) return '<span class="muted">–</span>'
  if (Array.isArray(v)) return v.length === 0 ? '<span class="muted">[]</span>' : v.map((x) => `<span class="chip">${esc(typeof x === 'object' ? JSON.stringify(x) : x)}</span>`).join(' ')
  if (typeof v === 'object') return `<code>${esc(JSON.stringify(v))}</code>`
  return esc(v)
}

// ---- data in ----

function onActor(msg) {
  const key = `${msg.kind}.${msg.id}`
  const prev = ui.actors.get(key)
  const state = stateText(msg.state)
  const history = prev ? prev.history : []
  if (history.length === 0 || history[history.length - 1].state !== state) {
    history.push({ state, at: msg.since ?? msg.at })
    if (history.length > HISTORY_KEPT) history.shift()
  }
  ui.actors.set(key, { msg, seen: msg.seen, history })
  if (ui.selected === null && msg.kind === 'writer') ui.selected = key
  schedule()
}

function connect() {
  const es = new EventSource('events')
  es.addEventListener('hello', (e) => {
    ui.offsetMs = JSON.parse(e.data).now - Date.now()
    ui.connected = true
    schedule()
  })
  es.addEventListener('actor', (e) => onActor(JSON.parse(e.data)))
  es.addEventListener('gone', (e) => {
    ui.actors.delete(JSON.parse(e.data).key)
    schedule()
  })
  es.addEventListener('cluster', (e) => {
    ui.cluster = JSON.parse(e.data)
    ui.clusterError = null
    schedule()
  })
  es.addEventListener('clusterError', (e) => {
    ui.clusterError = JSON.parse(e.data).message
    schedule()
  })
  es.onerror = () => {
    ui.connected = false
    schedule()
  }
}

// ---- rendering ----

let queued = false
function schedule() {
  if (queued) return
  queued = true
  requestAnimationFrame(() => {
    queued = false
    render()
  })
}

function render() {
  ui.deadBookies = new Set(bookieRows().filter((b) => b.dead).map((b) => b.id))
  renderHeader()
  renderActors()
  renderDetail()
  renderBookies()
  renderLedgers()
  renderLogs()
}

function renderHeader() {
  const bookies = bookieRows()
  const dead = bookies.filter((b) => b.dead).length
  $('status').className = ui.connected ? 'ok' : 'bad'
  $('status').textContent = ui.connected ? 'live' : 'disconnected'
  $('summary').textContent = `${ui.actors.size} actors · ${bookies.length} bookies${dead ? ` (${dead} dead)` : ''} · ${ui.cluster ? ui.cluster.ledgersTotal : '?'} ledgers`
}

function renderActors() {
  const byKind = new Map()
  for (const [key, a] of ui.actors) {
    if (!byKind.has(a.msg.kind)) byKind.set(a.msg.kind, [])
    byKind.get(a.msg.kind).push([key, a])
  }
  const kinds = [...byKind.keys()].sort((x, y) => rank(x) - rank(y) || x.localeCompare(y))
  const html = kinds.map((kind) => {
    const list = byKind.get(kind).sort(([, a], [, b]) => a.msg.id.localeCompare(b.msg.id, undefined, { numeric: true }))
    const open = ui.openKinds.has(kind)
    const rows = open ? list.map(([key, a]) => {
      const live = liveness(a)
      const cls = `actor ${live}${key === ui.selected ? ' selected' : ''}`
      return `<li class="${cls}" data-key="${esc(key)}" data-state="${esc(stateText(a.msg.state))}" data-live="${live}" title="${esc(a.msg.host)} pid ${a.msg.pid}">`
        + `<span class="dot"></span><span class="id">${esc(a.msg.id)}</span><span class="st">${esc(stateText(a.msg.state))}</span></li>`
    }).join('') : ''
    return `<section class="kind"><h3 data-kind="${esc(kind)}" class="${open ? 'open' : ''}">${esc(kind)} <span class="count">${list.length}</span></h3><ul>${rows}</ul></section>`
  }).join('')
  const box = $('actors')
  if (box.dataset.html !== html) {
    box.innerHTML = html || '<p class="muted">No actor has published yet.</p>'
    box.dataset.html = html
  }
}

const rank = (kind) => {
  const i = KIND_ORDER.indexOf(kind)
  return i < 0 ? KIND_ORDER.length : i
}

function chartFor(kind) {
  if (ui.charts.has(kind)) return ui.charts.get(kind)
  const def = ui.defs.get(kind)
  if (!def) return null
  const chart = drawChart(def)
  ui.charts.set(kind, chart)
  return chart
}

function renderDetail() {
  const a = ui.selected ? ui.actors.get(ui.selected) : null
  const panel = $('detail')
  if (!a) {
    panel.dataset.key = ''
    $('detail-title').textContent = 'Select an actor'
    $('detail-meta').textContent = ''
    $('chart').replaceChildren()
    $('context').innerHTML = ''
    $('events').innerHTML = ''
    $('history').innerHTML = ''
    return
  }
  const m = a.msg
  const live = liveness(a)
  panel.dataset.key = ui.selected
  panel.dataset.state = stateText(m.state)
  $('detail-title').innerHTML = `${esc(m.kind)} <b>${esc(m.id)}</b> <span class="badge ${live}">${esc(stateText(m.state))}</span>`
  $('detail-meta').textContent = `${m.host} pid ${m.pid} · ${live === 'finished' ? `ended (${m.status})` : live} · in this state for ${ago(serverNow() - (m.since ?? m.at))} · last heard ${ago(serverNow() - a.seen)} ago`
  const chart = chartFor(m.kind)
  const holder = $('chart')
  if (chart) {
    if (holder.firstChild !== chart.element) holder.replaceChildren(chart.element)
    chart.highlight(activeStateIds(ui.defs.get(m.kind).machineId, m.state))
  } else holder.replaceChildren()
  const ctx = Object.entries(m.context ?? {})
  $('context').innerHTML = ctx.length === 0 ? '<tr><td class="muted">empty</td></tr>'
    : ctx.map(([k, v]) => `<tr data-field="${esc(k)}"><th>${esc(k)}</th><td>${value(v)}</td></tr>`).join('')
  $('events').innerHTML = (m.events ?? []).map((e) => `<li>${esc(e)}</li>`).reverse().join('') || '<li class="muted">none yet</li>'
  $('history').innerHTML = a.history.map((h) => `<li data-state="${esc(h.state)}">${esc(h.state)}</li>`).join('<li class="sep">→</li>')
}

/** Bookies from the registrations and from their inspection, with why a dead one is dead. */
function bookieRows() {
  const recs = new Map((ui.cluster?.bookies ?? []).map((b) => [b.bookieId, b]))
  const ids = new Set([...recs.keys()])
  for (const a of ui.actors.values()) if (a.msg.kind === 'bookie') ids.add(a.msg.id)
  return [...ids].sort((x, y) => x.localeCompare(y, undefined, { numeric: true })).map((id) => {
    const rec = recs.get(id)
    const a = ui.actors.get(`bookie.${id}`)
    const why = []
    if (ui.cluster && !rec) why.push('not registered')
    if (rec && !rec.alive) why.push(`no heartbeat for ${ago(rec.heartbeatAgoMs)}`)
    const live = a ? heard(a) : null
    if (live === 'silent') why.push(`silent for ${ago(serverNow() - a.seen)}`)
    if (live === 'finished') why.push(`stopped (${stateText(a.msg.state)})`)
    return { id, rec, actor: a, dead: why.length > 0, why }
  })
}

function renderBookies() {
  const rows = bookieRows()
  $('bookies').innerHTML = rows.map((b) => {
    const c = b.actor?.msg.context ?? {}
    const mode = b.rec?.state ?? c.mode ?? '?'
    const disk = typeof c.diskUsage === 'number' ? `${(c.diskUsage * 100).toFixed(1)} %` : '–'
    // Entries whose stored copy is unreadable (the bookie's entry store), until autorecovery rewrites them.
    const damaged = c.damage && c.damage.entries > 0 ? c.damage : null
    const damage = damaged ? `<div class="why" data-damaged="${damaged.entries}">${damaged.entries} damaged entr${damaged.entries === 1 ? 'y' : 'ies'} in ledger${damaged.ledgers.length === 1 ? '' : 's'} ${esc(damaged.ledgers.slice(0, 5).join(', '))}${damaged.ledgers.length > 5 ? ', …' : ''}</div>` : ''
    // Ledgers the bookie cannot vouch for after an unclean stop or a new disk (answered IN_LIMBO) until its integrity check clears them.
    const ig = c.integrity && (c.integrity.unchecked || c.integrity.limboLedgers > 0) ? c.integrity : null
    const limbo = ig ? `<div class="why" data-limbo="${ig.limboLedgers}">${ig.unchecked ? 'unchecked; ' : ''}${ig.limboLedgers} ledger${ig.limboLedgers === 1 ? '' : 's'} in limbo${ig.limbo.length > 0 ? ` (${esc(ig.limbo.slice(0, 5).join(', '))}${ig.limboLedgers > 5 ? ', …' : ''})` : ''}${ig.last ? `; last check ${esc(ig.last.result)}` : ''}</div>` : ''
    const where = b.rec ? `${b.rec.host} pid ${b.rec.pid}` : b.actor ? `${b.actor.msg.host} pid ${b.actor.msg.pid}` : ''
    return `<tr class="${b.dead ? 'dead' : 'alive'}" data-bookie="${esc(b.id)}" data-alive="${!b.dead}">`
      + `<td class="id" data-key="${b.actor ? esc(`bookie.${b.id}`) : ''}" title="${esc(where)}">${esc(b.id)}</td>`
      + `<td><span class="badge ${b.dead ? 'dead' : 'live'}">${b.dead ? 'dead' : 'alive'}</span>${b.dead ? `<div class="why">${esc(b.why.join('; '))}</div>` : ''}</td>`
      + `<td>${esc(b.actor ? stateText(b.actor.msg.state) : '–')}</td>`
      + `<td class="${mode === 'readonly' || damaged || ig ? 'warn' : ''}">${esc(mode)}${damage}${limbo}</td>`
      + `<td>${disk}</td><td>${b.rec ? `${ago(b.rec.heartbeatAgoMs)} ago` : '–'}</td></tr>`
  }).join('') || '<tr><td colspan="6" class="muted">no bookies</td></tr>'
}

function renderLogs() {
  const logs = ui.cluster?.logs ?? []
  $('logs-note').textContent = ui.cluster && ui.cluster.logsTotal > logs.length ? `the first ${logs.length} of ${ui.cluster.logsTotal}` : ''
  $('logs').innerHTML = logs.map((l) => {
    // A timeline: one block per segment, its width by records (at least a sliver), open ones marked.
    const most = Math.max(1, ...l.segments.map((s) => s.recordCount))
    const segs = l.segments.map((s) => `<span class="lseg st-${esc(s.state)}" style="min-width:${(0.6 + 3 * s.recordCount / most).toFixed(2)}em" title="segment ${s.segmentSeq}: ledger ${s.ledgerId}, ${s.state}, ${s.recordCount} records, ${s.bytes} bytes">${s.segmentSeq}<sub>${s.ledgerId}</sub> ${s.state === 'open' ? '…' : s.recordCount}</span>`).join('')
    // Lag: the segments after the cursor's own; the records of the closed ones among them (the
    // cursor's own segment and the open one add more: machines/logRules.ts subscriberLag).
    const subs = l.subscribers.map((s) => {
      const b = s.behind
      const lag = b.segments === 0 ? 'in the last segment' : `${b.segments} segment${b.segments === 1 ? '' : 's'} behind, ${b.records}${b.open ? '+' : ''} records`
      return `<span class="chip">${esc(s.subscriber)} ${esc(s.position)}</span>`
        + `<span class="lag muted" data-subscriber="${esc(s.subscriber)}" data-behind-segments="${b.segments}" data-behind-records="${b.records}"> ${esc(lag)}</span>`
    }).join('<br>')
    // Its writer and readers: the log-writer and log-reader actors of this log (clients with inspect).
    const mine = (kind) => [...ui.actors.entries()].filter(([, a]) => a.msg.kind === kind && heard(a) === 'live' && (a.msg.context.log ?? a.msg.context.name) === l.name)
    const writers = mine('log-writer').map(([key, a]) => `<span class="chip writer" data-key="${esc(key)}">writer ${esc(stateText(a.msg.state))}</span>`)
    const readers = mine('log-reader').map(([key, a]) => {
      const c = a.msg.context
      return `<span class="chip reader" data-key="${esc(key)}" data-subscriber="${esc(c.subscriber ?? '')}">reader${c.subscriber ? ` ${esc(c.subscriber)}` : ''} at ${esc(c.at ?? '?')}, ${c.delivered ?? 0} read</span>`
    })
    const who = [...writers, ...readers].join(' ')
    return `<tr data-log="${esc(l.name)}" data-segments="${l.segments.length}" data-sealed="${l.sealed}">`
      + `<td class="id">${esc(l.name)}${l.sealed ? ' <span class="badge st-CLOSED">sealed</span>' : ''}</td><td>${l.epoch}</td>`
      + `<td class="wrap">${segs || '<span class="muted">none yet</span>'}</td><td class="wrap">${subs || '<span class="muted">none</span>'}</td>`
      + `<td class="wrap">${who || '<span class="muted">none seen</span>'}</td></tr>`
  }).join('') || '<tr><td colspan="5" class="muted">no logs</td></tr>'
}

function renderLedgers() {
  const dead = ui.deadBookies
  const ledgers = ui.cluster?.ledgers ?? []
  $('ledgers-note').textContent = ui.clusterError ? `metadata: ${ui.clusterError}`
    : ui.cluster && ui.cluster.ledgersTotal > ledgers.length ? `the ${ledgers.length} newest of ${ui.cluster.ledgersTotal}` : ''
  $('ledgers').innerHTML = ledgers.map((l) => {
    const w = ui.actors.get(`writer.${l.ledgerId}`)
    const writing = w && w.msg.status === 'active' && l.state !== 'CLOSED'
    const lac = l.state === 'CLOSED' ? l.lastEntryId : writing ? w.msg.context.lac : null
    const length = l.state === 'CLOSED' ? l.length : writing ? w.msg.context.length : null
    const segs = l.segments.map((s) => `<div class="seg"><span class="from">from ${s.firstEntryId}</span> `
      + s.ensemble.map((b) => `<span class="chip${dead.has(b) ? ' dead' : ''}">${esc(b)}</span>`).join(' ') + '</div>').join('')
    return `<tr data-ledger="${l.ledgerId}" data-segments="${l.segments.length}" data-state="${esc(l.state)}">`
      + `<td class="id"${w ? ` data-key="writer.${l.ledgerId}"` : ''}>${l.ledgerId}</td><td><span class="badge st-${esc(l.state)}">${esc(l.state)}</span></td>`
      + `<td>${l.ensembleSize}/${l.writeQuorum}/${l.ackQuorum}</td>`
      + `<td${writing ? ' title="from its writer\'s inspection"' : ''}>${lac ?? '<span class="muted">?</span>'}${writing ? '<sup class="muted">w</sup>' : ''}</td>`
      + `<td>${length ?? '<span class="muted">?</span>'}</td><td class="wrap">${segs}</td></tr>`
  }).join('') || '<tr><td colspan="6" class="muted">no ledgers</td></tr>'
}

// ---- interaction ----

document.addEventListener('click', (e) => {
  const target = e.target instanceof Element ? e.target : null
  const kind = target?.closest('h3[data-kind]')
  if (kind) {
    const k = kind.dataset.kind
    if (ui.openKinds.has(k)) ui.openKinds.delete(k)
    else ui.openKinds.add(k)
    return schedule()
  }
  const row = target?.closest('[data-key]')
  if (row && row.dataset.key) {
    ui.selected = row.dataset.key
    schedule()
  }
})

// An inspector started with a token answers the page's data only after its login, which sets
// an HttpOnly cookie (the page never holds the token itself); until then it shows the form.
fetch('api/machines').then((r) => {
  if (r.status === 401) return showLogin()
  return r.json().then((defs) => {
    for (const d of defs) ui.defs.set(d.kind, d)
    schedule()
    connect()
  })
})

function showLogin() {
  const form = document.createElement('form')
  form.id = 'login'
  const label = document.createElement('label')
  label.textContent = 'This inspector asks for its token: '
  const input = document.createElement('input')
  input.type = 'password'
  input.name = 'token'
  input.autocomplete = 'current-password'
  label.append(input)
  const button = document.createElement('button')
  button.type = 'submit'
  button.textContent = 'Open'
  const note = document.createElement('span')
  note.className = 'bad'
  form.append(label, button, note)
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    fetch('login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: input.value }) }).then((r) => {
      if (r.status === 204) location.reload()
      else note.textContent = ' not the token'
    })
  })
  document.body.prepend(form)
  input.focus()
}
// Liveness changes with time alone (a silent actor sends nothing): re-render every second.
setInterval(schedule, 1000)
