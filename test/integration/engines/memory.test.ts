// The engines' contract (./contract) on the in-memory channel: one process, no store.
import t from 'tap'
import { contract } from './contract.js'

contract(t, { name: 'memory', shared: false, backend: async () => undefined })
