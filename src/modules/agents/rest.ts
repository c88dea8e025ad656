/**
 * A2A's HTTP+JSON (REST) binding through the proxy: its operations (A2A spec
 * §11.3, each also under an optional `/{tenant}` prefix) and how a request
 * is read. The proxy reads of a body only what it must check: the webhook
 * URLs of push-notification configs. Everything else reaches the agent's
 * HTTP+JSON interface as sent, path, query and body.
 */
import { AppError } from '../../errors'
import { restErrorBody } from '../../http/surfaces'
import { declaresV1, pushUrlsOf, requestFacts, type AnswerWording, type PushUrl, type TaskFacts } from './proxy'

/** One operation of the binding. */
export interface RestOperation {
  /** The A2A method it stands for (its v1.0 name, as activity records name it whichever the binding). */
  method: string
  verb: 'GET' | 'POST' | 'DELETE'
  /** Its path under the interface URL, in the route table's form (`/tasks/:taskId:cancel`). */
  path: string
  summary: string
  /** Answered with an event stream. */
  streaming?: boolean
  /** Its body may carry a push-notification config, whose URL is checked. */
  readsBody?: boolean
  /** Also taken under a `/{tenant}` prefix (every v1.0 operation; v0.3's `/v1/card` stands alone). */
  tenantForm: boolean
}

/** The operations, in the order the router tries them: a path without a tenant before the same path read with one. */
export const REST_OPERATIONS: readonly RestOperation[] = [
  { method: 'SendMessage', verb: 'POST', path: '/message:send', summary: 'Send a message (SendMessage)', readsBody: true, tenantForm: true },
  { method: 'SendStreamingMessage', verb: 'POST', path: '/message:stream', summary: 'Send a message and stream the task (SendStreamingMessage, server-sent events)', streaming: true, readsBody: true, tenantForm: true },
  { method: 'GetTask', verb: 'GET', path: '/tasks/:taskId', summary: 'A task (GetTask)', tenantForm: true },
  { method: 'ListTasks', verb: 'GET', path: '/tasks', summary: 'List tasks (ListTasks)', tenantForm: true },
  { method: 'CancelTask', verb: 'POST', path: '/tasks/:taskId:cancel', summary: 'Cancel a task (CancelTask)', tenantForm: true },
  { method: 'SubscribeToTask', verb: 'POST', path: '/tasks/:taskId:subscribe', summary: "Stream a task's updates (SubscribeToTask, server-sent events)", streaming: true, tenantForm: true },
  { method: 'SubscribeToTask', verb: 'GET', path: '/tasks/:taskId:subscribe', summary: "Stream a task's updates (SubscribeToTask, server-sent events; GET as the A2A proto binds it)", streaming: true, tenantForm: true },
  { method: 'CreateTaskPushNotificationConfig', verb: 'POST', path: '/tasks/:taskId/pushNotificationConfigs', summary: 'Create a push-notification config (its URL checked by the URL guard)', readsBody: true, tenantForm: true },
  { method: 'ListTaskPushNotificationConfigs', verb: 'GET', path: '/tasks/:taskId/pushNotificationConfigs', summary: "List a task's push-notification configs", tenantForm: true },
  { method: 'GetTaskPushNotificationConfig', verb: 'GET', path: '/tasks/:taskId/pushNotificationConfigs/:configId', summary: 'A push-notification config', tenantForm: true },
  { method: 'DeleteTaskPushNotificationConfig', verb: 'DELETE', path: '/tasks/:taskId/pushNotificationConfigs/:configId', summary: 'Delete a push-notification config', tenantForm: true },
  { method: 'GetExtendedAgentCard', verb: 'GET', path: '/extendedAgentCard', summary: 'The extended agent card, its interfaces and security rewritten as the public card', tenantForm: true },
  { method: 'GetExtendedAgentCard', verb: 'GET', path: '/v1/card', summary: "The extended agent card at A2A v0.3's HTTP+JSON path, rewritten as the public card", tenantForm: false },
]

/** A REST request ready to forward. */
export interface RestCall {
  operation: RestOperation
  /** The bytes to send (the caller's own when nothing had to change), or null for none. */
  body: Uint8Array<ArrayBuffer> | null
  /** Whether the request is A2A v1.0 (by its A2A-Version header). */
  v1: boolean
  facts: TaskFacts
  pushUrls: PushUrl[]
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * Reads a REST request. Only a body that may carry a push-notification
 * config is read: one that is not JSON is refused (400), as the URL it may
 * hold could not be checked; one whose URLs were found is sent as it was
 * read, so the agent reads the URLs that were checked.
 */
export function readRestRequest(operation: RestOperation, taskId: string | undefined, bytes: Uint8Array<ArrayBuffer>, a2aVersion: string | undefined): RestCall {
  const v1 = declaresV1(a2aVersion)
  const sent = operation.verb === 'POST' && bytes.length > 0 ? bytes : null
  let facts: TaskFacts = { taskId: taskId ?? null, contextId: null, state: null }
  if (!operation.readsBody || sent === null) return { operation, body: sent, v1, facts, pushUrls: [] }
  let data: unknown
  try {
    data = JSON.parse(decoder.decode(sent))
  } catch (error) {
    throw new AppError(400, 'INVALID_JSON', `request body is not valid JSON (${(error as Error).message}): a push-notification URL in it could not be checked`)
  }
  const pushUrls = pushUrlsOf(operation.method, data, 'body')
  facts = requestFacts(operation.method, data)
  facts.taskId ??= taskId ?? null
  return { operation, body: pushUrls.length > 0 ? encoder.encode(JSON.stringify(data)) : sent, v1, facts, pushUrls }
}

/** The HTTP+JSON binding's wording: the answer is the result; errors are REST error bodies, a cut stream ends with an `error` event. */
export const restWording: AnswerWording = {
  resultOf: (answer) => answer,
  errorBody: (status, message) => restErrorBody(status, 'AGENT_ERROR', message, { status }),
  errorEvent: (status, message) => `event: error\ndata: ${restErrorBody(status, status === 504 ? 'TIMEOUT' : 'AGENT_ERROR', message)}\n\n`,
}
