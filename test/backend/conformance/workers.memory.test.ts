import { workerStoreCases } from './workers'
import { makeBackend } from '../../support/backend'

workerStoreCases(() => makeBackend('memory'))
