// Heartbeats for every open stream from one timer per heartbeat interval, not one timer per stream: an idle
// stream then holds a slot in a set instead of a Timeout, its callback and its place in Node's timer lists.

/**
 * Whole milliseconds on a monotonic clock (since the process started): what streams stamp their writes with. A
 * wall-clock change moves neither heartbeats nor durations.
 */
export function clock (): number {
  return Math.floor(performance.now())
}

/** A stream that writes heartbeats. */
export interface HeartbeatMember {
  /** @internal Where the member waits in its wheel; -1 when it is in none. */
  heartbeatSlot: number
  /**
   * Called when the member is due (`now` is `clock()`): writes a heartbeat if it has been idle long enough and
   * returns how many milliseconds until it is next due, or -1 to leave the wheel.
   */
  heartbeat: (now: number) => number
}

/** Ticks per heartbeat interval: a heartbeat goes out at most two ticks (an eighth of the interval) late. */
const TICKS = 16
/** Slots in a wheel: a member waits at most TICKS + 1 ticks (the tick under way counts for nothing). */
const SLOTS = TICKS + 2

/**
 * A timing wheel for one heartbeat interval: SLOTS sets of members, the cursor moving one slot per tick. A
 * member due in `ms` waits `ceil(ms / tick) + 1` slots ahead (part of the tick under way has passed already),
 * so it is never called early and at most two ticks late. The wheel's timer runs only while it has members,
 * and never keeps the process alive.
 */
class HeartbeatWheel {
  readonly #tick: number
  readonly #slots: Array<Set<HeartbeatMember>> = []
  #cursor = 0
  #size = 0
  #timer: NodeJS.Timeout | undefined

  constructor (interval: number) {
    this.#tick = Math.max(1, Math.ceil(interval / TICKS))
    for (let i = 0; i < SLOTS; i++) this.#slots.push(new Set())
  }

  add (member: HeartbeatMember, dueIn: number): void {
    const ticks = Math.min(TICKS, Math.ceil(dueIn / this.#tick)) + 1
    const slot = (this.#cursor + ticks) % SLOTS
    ;(this.#slots[slot] as Set<HeartbeatMember>).add(member)
    member.heartbeatSlot = slot
    this.#size++
    this.#timer ??= setInterval(this.#onTick, this.#tick).unref()
  }

  remove (member: HeartbeatMember): void {
    const slot = member.heartbeatSlot
    member.heartbeatSlot = -1
    if (slot === -1) return // being called, or already gone
    ;(this.#slots[slot] as Set<HeartbeatMember>).delete(member)
    if (--this.#size === 0) this.#stop()
  }

  #onTick = (): void => {
    this.#cursor = (this.#cursor + 1) % SLOTS
    const due = this.#slots[this.#cursor] as Set<HeartbeatMember>
    if (due.size === 0) return
    const now = clock()
    // a member is taken out before it is called, and goes back to another slot (never this one) if it stays
    for (const member of due) {
      due.delete(member)
      this.#size--
      member.heartbeatSlot = -1
      const next = member.heartbeat(now)
      if (next >= 0) this.add(member, next)
    }
    if (this.#size === 0) this.#stop()
  }

  #stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}

// one per interval in use; kept once made (a process uses a handful of intervals), idle without members
const wheels = new Map<number, HeartbeatWheel>()

/** Calls `member.heartbeat()` about every `interval` ms (first after `interval`) until it returns -1 or leaves. */
export function joinHeartbeats (member: HeartbeatMember, interval: number): void {
  let wheel = wheels.get(interval)
  if (wheel === undefined) {
    wheel = new HeartbeatWheel(interval)
    wheels.set(interval, wheel)
  }
  wheel.add(member, interval)
}

/** Stops calling `member` (a closed stream). */
export function leaveHeartbeats (member: HeartbeatMember, interval: number): void {
  wheels.get(interval)?.remove(member)
}
