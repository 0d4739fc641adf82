import { EventEmitter } from 'node:events'

// An EventEmitter's constructor gives every instance a listener table (a dictionary-mode object of ~200 bytes)
// and four more fields. A body piped by the plugin itself has no listener all its life, and an idle server holds
// one per open stream. Node's emitter methods make the table themselves when an instance has none (`_events`
// undefined: checked on Node 20–24, and by test/lazy-emitter), so this base skips the constructor: its instances
// are EventEmitters, with Node's own methods, and hold nothing of one until something listens.

/** The constructor of an emitter that makes its listener table on its first listener. */
function LazyEmitter (): void {}
LazyEmitter.prototype = EventEmitter.prototype

const Base = LazyEmitter as unknown as new () => EventEmitter

export { Base as LazyEmitter }
