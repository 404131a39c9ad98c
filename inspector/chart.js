// Draws one state machine definition (from /api/machines) as SVG: a box per state, nested states
// inside their parent, arrows labelled with the events that move between them. The layout is a
// simple layered one: inside each compound state, children sit in columns by their distance
// (in transitions) from the initial child; parallel regions are stacked. Transitions that only run
// actions (no target) are not drawn; those defined on the machine itself ("from any state") are
// listed under the chart. `highlight(ids)` marks the active states without redrawing.

const NS = 'http://www.w3.org/2000/svg'
const CHAR_W = 6.4
const BOX_H = 30
const PAD = 12
const HEADER = 20
const GAP_X = 96
const GAP_Y = 22
const LOOP_H = 24
const LABEL_MAX = 34

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (text !== undefined) e.textContent = text
  return e
}

/** The child of `parent` that is `id` or holds it, or null. */
function childHolding(parent, id) {
  for (const c of parent.states) if (id === c.id || id.startsWith(c.id + '.')) return c
  return null
}

function* descendants(node) {
  yield node
  for (const c of node.states) yield* descendants(c)
}

/** Columns of `node`'s children: breadth-first from the initial child over sibling transitions. */
function columns(node) {
  const next = new Map(node.states.map((c) => [c.id, []]))
  for (const c of node.states) {
    for (const d of descendants(c)) {
      for (const t of d.transitions) {
        for (const target of t.targets) {
          const to = childHolding(node, target)
          if (to && to !== c && !next.get(c.id).includes(to)) next.get(c.id).push(to)
        }
      }
    }
  }
  const rank = new Map()
  const first = node.states.find((c) => c.id === node.initial) ?? node.states[0]
  const queue = [first]
  rank.set(first.id, 0)
  while (queue.length > 0) {
    const c = queue.shift()
    for (const n of next.get(c.id)) {
      if (!rank.has(n.id)) { rank.set(n.id, rank.get(c.id) + 1); queue.push(n) }
    }
  }
  // States reached only from outside (e.g. "from any state") go in a last column.
  const last = Math.max(...rank.values()) + 1
  for (const c of node.states) if (!rank.has(c.id)) rank.set(c.id, last)
  const cols = []
  for (const c of node.states) (cols[rank.get(c.id)] ??= []).push(c)
  const dense = cols.filter(Boolean)
  // One pass of the barycenter rule: order each column by where its predecessors sit, which
  // removes most crossings in machines this size.
  for (let i = 1; i < dense.length; i++) {
    const prev = dense[i - 1]
    const at = (c) => {
      const rows = prev.map((p, row) => (next.get(p.id).includes(c) ? row : -1)).filter((r) => r >= 0)
      return rows.length === 0 ? Infinity : rows.reduce((a, b) => a + b, 0) / rows.length
    }
    const keyed = dense[i].map((c, k) => ({ c, k, at: at(c) }))
    keyed.sort((a, b) => a.at - b.at || a.k - b.k)
    dense[i] = keyed.map((x) => x.c)
  }
  return dense
}

/** Sizes every state and places children relative to their parent's top-left corner. */
function measure(node, isRoot) {
  if (node.states.length === 0) {
    node.w = Math.max(84, node.key.length * CHAR_W + 24)
    node.h = BOX_H
    return
  }
  for (const c of node.states) measure(c, false)
  const top = isRoot ? 0 : HEADER + 4
  const inset = isRoot ? 0 : PAD
  if (node.type === 'parallel') {
    let y = top
    let w = 0
    for (const c of node.states) {
      c.x = inset
      c.y = y
      y += c.h + GAP_Y / 2
      w = Math.max(w, c.w)
    }
    node.w = Math.max(w + 2 * inset, node.key.length * CHAR_W + 24)
    node.h = y - GAP_Y / 2 + inset
    return
  }
  let x = inset
  let bottom = top
  for (const col of columns(node)) {
    const colW = Math.max(...col.map((c) => c.w))
    let y = top
    for (const c of col) {
      c.x = x + (colW - c.w) / 2
      c.y = y
      y += c.h + GAP_Y
    }
    bottom = Math.max(bottom, y - GAP_Y)
    x += colW + GAP_X
  }
  node.w = Math.max(x - GAP_X + inset, node.key.length * CHAR_W + 24)
  // Room at the bottom for arrows going back to an earlier column.
  node.h = bottom + inset + (isRoot ? 0 : 18)
}

function place(node, ox, oy, boxes) {
  node.ax = ox + (node.x ?? 0)
  node.ay = oy + (node.y ?? 0)
  boxes.set(node.id, node)
  for (const c of node.states) place(c, node.ax, node.ay, boxes)
}

const short = (s) => (s.length > LABEL_MAX ? s.slice(0, LABEL_MAX - 1) + '…' : s)

/** The point at `t` of the cubic Bézier p0..p3. */
function bezier(t, p0, p1, p2, p3) {
  const u = 1 - t
  return [0, 1].map((i) => u * u * u * p0[i] + 3 * u * u * t * p1[i] + 3 * u * t * t * p2[i] + t * t * t * p3[i])
}

const curve = (p0, p1, p2, p3) => ({ d: `M${p0} C${p1} ${p2} ${p3}`, at: (t) => bezier(t, p0, p1, p2, p3) })

/**
 * Path of an arrow from box `s` to box `t`, and `at(t)`: the point a fraction `t` along it.
 * `below(x0, x1)` is the lowest point of the boxes between x0 and x1, under which backward arrows
 * pass.
 */
function route(s, t, below) {
  const scy = s.ay + s.h / 2
  const tcy = t.ay + t.h / 2
  if (s === t) {
    const a = s.ax + s.w * 0.62
    const b = s.ax + s.w * 0.38
    return { d: `M${a},${s.ay} C${a},${s.ay - LOOP_H} ${b},${s.ay - LOOP_H} ${b},${s.ay}`, at: () => [s.ax + s.w / 2, s.ay - LOOP_H + 5] }
  }
  if (t.ax >= s.ax + s.w) {
    const sx = s.ax + s.w
    const dx = (t.ax - sx) / 2
    return curve([sx, scy], [sx + dx, scy], [t.ax - dx, tcy], [t.ax, tcy])
  }
  if (t.ax + t.w <= s.ax) {
    // Backward: under every box between the two.
    const sx = s.ax + s.w / 2
    const tx = t.ax + t.w / 2
    const y = below(t.ax, s.ax + s.w)
    return curve([sx, s.ay + s.h], [sx, y], [tx, y], [tx, t.ay + t.h])
  }
  // Same column: along the right-hand side.
  const x = Math.max(s.ax + s.w, t.ax + t.w)
  return curve([s.ax + s.w, scy], [x + 40, scy], [x + 40, tcy], [t.ax + t.w, tcy])
}

/** Fractions along an arrow tried for its label: past the middle first, where fanned-out arrows have parted. */
const LABEL_AT = [0.6, 0.45, 0.75, 0.35, 0.85, 0.5]
const LABEL_CHAR_W = 5.6

const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h

/** Draw `def` (a MachineDefinition); returns {element, highlight(activeIds)}. */
export function drawChart(def) {
  const root = structuredClone(def.root)
  measure(root, true)
  root.x = 0
  root.y = 0
  const boxes = new Map()
  place(root, 0, LOOP_H + 8, boxes)
  const width = root.w + 80
  // Backward arrows: each one a little lower than the last that passed the same way.
  let backward = 0
  const below = (x0, x1) => {
    let y = 0
    for (const b of boxes.values()) {
      if (b !== root && b.states.length === 0 && b.ax < x1 && b.ax + b.w > x0) y = Math.max(y, b.ay + b.h)
    }
    return y + 24 + 10 * (backward++ % 4)
  }
  const height = root.ay + root.h + 64
  const svg = el('svg', { viewBox: `-8 0 ${width + 16} ${height}`, width: width + 16, height, class: 'chart', role: 'img' })
  svg.append(el('title', {}, `${def.kind} state machine`))
  const defs = el('defs')
  const marker = el('marker', { id: `arrow-${def.kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' })
  marker.append(el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }))
  defs.append(marker)
  svg.append(defs)

  const rects = new Map()
  const drawBox = (n) => {
    if (n !== root) {
      const leaf = n.states.length === 0
      const g = el('g', { class: `state ${leaf ? 'leaf' : 'parent'} ${n.type}`, 'data-state': n.id })
      g.append(el('rect', { x: n.ax, y: n.ay, width: n.w, height: n.h, rx: leaf ? 8 : 10 }))
      if (n.type === 'final') g.append(el('rect', { x: n.ax + 3, y: n.ay + 3, width: n.w - 6, height: n.h - 6, rx: 6, class: 'inner' }))
      g.append(el('text', leaf ? { x: n.ax + n.w / 2, y: n.ay + n.h / 2 + 4, 'text-anchor': 'middle' } : { x: n.ax + 8, y: n.ay + 14 }, n.key))
      svg.append(g)
      rects.set(n.id, g)
    }
    for (const c of n.states) drawBox(c)
  }
  drawBox(root)

  // Arrows, one per (source, target) pair, labelled with its events.
  const pairs = new Map()
  for (const n of boxes.values()) {
    if (n === root) continue
    for (const t of n.transitions) {
      for (const target of t.targets) {
        if (target === n.id && !t.reenter) continue
        const key = `${n.id}>${target}`
        const p = pairs.get(key) ?? { s: n, t: boxes.get(target), events: [], detail: [] }
        // An eventless transition is told apart by its guard.
        const name = t.event === 'always' && t.guard && t.guard !== 'guarded' ? `[${t.guard}]` : t.event
        if (!p.events.includes(name)) p.events.push(name)
        p.detail.push(t.guard ? `${t.event} [${t.guard}]` : t.event)
        pairs.set(key, p)
      }
    }
  }
  const edges = el('g', { class: 'edges' })
  const labels = el('g', { class: 'labels' })
  const leaves = [...boxes.values()].filter((b) => b !== root && b.states.length === 0).map((b) => ({ x: b.ax, y: b.ay, w: b.w, h: b.h }))
  const placed = []
  for (const p of pairs.values()) {
    if (!p.t) continue
    const r = route(p.s, p.t, below)
    const g = el('g', { class: 'edge' })
    g.append(el('title', {}, `${p.s.key} → ${p.t.key}: ${p.detail.join(', ')}`))
    g.append(el('path', { d: r.d, 'marker-end': `url(#arrow-${def.kind})` }))
    edges.append(g)
    // The label: the first spot along the arrow that covers no state and no other label.
    const label = short(p.events.join(', '))
    const w = label.length * LABEL_CHAR_W + 4
    const spots = LABEL_AT.map((f) => {
      const [x, y] = r.at(f)
      return { x: x - w / 2, y: y - 11, w, h: 12 }
    })
    const box = spots.find((b) => !placed.some((o) => overlaps(o, b)) && !leaves.some((o) => overlaps(o, b)))
      ?? spots.find((b) => !placed.some((o) => overlaps(o, b))) ?? spots[0]
    placed.push(box)
    const lg = el('g', { class: 'edge-label' })
    lg.append(el('title', {}, `${p.s.key} → ${p.t.key}: ${p.detail.join(', ')}`))
    lg.append(el('rect', { x: box.x, y: box.y, width: box.w, height: box.h, class: 'label-bg' }))
    lg.append(el('text', { x: box.x + box.w / 2, y: box.y + 9, 'text-anchor': 'middle', class: 'label' }, label))
    labels.append(lg)
  }
  svg.append(edges)
  svg.append(labels)

  const anyState = root.transitions.filter((t) => t.targets.length > 0)
    .map((t) => `${t.event}${t.guard ? ` [${t.guard}]` : ''} → ${t.targets.map((id) => boxes.get(id)?.key ?? id).join(', ')}`)

  const wrap = document.createElement('div')
  wrap.className = 'chart-wrap'
  wrap.append(svg)
  if (anyState.length > 0) {
    const p = document.createElement('p')
    p.className = 'any-state'
    p.textContent = `from any state: ${[...new Set(anyState)].join(' · ')}`
    wrap.append(p)
  }
  return {
    element: wrap,
    highlight(activeIds) {
      for (const [id, g] of rects) g.classList.toggle('active', activeIds.has(id))
    },
  }
}

/** Ids of the states active in a state value, as machines/definitions.ts's activeStateIds. */
export function activeStateIds(machineId, value) {
  const out = new Set()
  const walk = (prefix, v) => {
    if (typeof v === 'string') out.add(`${prefix}.${v}`)
    else if (v !== null && typeof v === 'object') {
      for (const [k, sub] of Object.entries(v)) {
        out.add(`${prefix}.${k}`)
        walk(`${prefix}.${k}`, sub)
      }
    }
  }
  walk(machineId, value)
  return out
}
