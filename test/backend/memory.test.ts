import { testBackend } from './conformance'
import { makeBackend } from '../support/backend'

testBackend(() => makeBackend('memory'))
