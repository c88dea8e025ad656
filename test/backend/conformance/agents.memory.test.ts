import { agentStoreCases } from './agents'
import { makeBackend } from '../../support/backend'

agentStoreCases(() => makeBackend('memory'))
