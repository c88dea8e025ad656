/**
 * An agent's interfaces, by its own card, and the card as Switchboard serves
 * it. A v1.0 card lists its interfaces in `supportedInterfaces` (each with a
 * `protocolBinding`); a v0.3 card has `url` for its `preferredTransport`
 * (JSONRPC when not said) and `additionalInterfaces` (each with a
 * `transport`). The proxy carries two bindings, JSON-RPC and HTTP+JSON;
 * gRPC needs HTTP/2 end to end, which the proxy does not speak, so a gRPC
 * interface is left out of the served card.
 */

type JsonObject = Record<string, unknown>
const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value)

/** The bindings the proxy carries, as cards name them. */
export type Binding = 'JSONRPC' | 'HTTP+JSON'

/** The binding a card entry names, when the proxy carries it; an entry that names none is JSON-RPC (the v0.3 default). */
function bindingOf(named: unknown): Binding | null {
  if (named === undefined) return 'JSONRPC'
  if (typeof named !== 'string') return null
  const upper = named.toUpperCase()
  return upper === 'JSONRPC' || upper === 'HTTP+JSON' ? upper : null
}

/** Whether a protocol version ("1.0", "0.3.0") is version 1 or later; null when not given. */
const isV1Version = (version: unknown): boolean | null => (typeof version === 'string' && version.trim() !== '' ? Number.parseInt(version, 10) >= 1 : null)

/**
 * The URL of the card's interface of `binding` for a request of A2A v1.0
 * (`v1`) or earlier: the first interface of the request's major version,
 * else the first of the binding; null when the card declares none.
 */
export function interfaceUrlOf(card: JsonObject | null, binding: Binding, v1: boolean): string | null {
  if (card === null) return null
  const found: { url: string; v1: boolean | null }[] = []
  if (Array.isArray(card.supportedInterfaces)) {
    for (const entry of card.supportedInterfaces) {
      if (isObject(entry) && typeof entry.url === 'string' && bindingOf(entry.protocolBinding) === binding) found.push({ url: entry.url, v1: isV1Version(entry.protocolVersion) })
    }
  }
  const cardVersion = isV1Version(card.protocolVersion)
  if (typeof card.url === 'string' && bindingOf(card.preferredTransport) === binding) found.push({ url: card.url, v1: cardVersion })
  if (Array.isArray(card.additionalInterfaces)) {
    for (const entry of card.additionalInterfaces) {
      if (isObject(entry) && typeof entry.url === 'string' && typeof entry.transport === 'string' && bindingOf(entry.transport) === binding) found.push({ url: entry.url, v1: cardVersion })
    }
  }
  return (found.find((entry) => entry.v1 === v1) ?? found[0])?.url ?? null
}

/** Names of the security schemes Switchboard declares on the cards it serves. */
const BEARER_SCHEME = 'switchboardBearer'
const WORKSPACE_SCHEME = 'switchboardWorkspaceId'
const BEARER_TEXT = "The calling workspace's Switchboard token (Authorization: Bearer). The agent's own credentials are Switchboard's to send: the proxy does not pass the caller's Authorization on."
const WORKSPACE_TEXT = "The calling workspace's id (X-Workspace-ID); it must name the token's workspace, and is taken from the token when absent."

/**
 * The security the proxy requires, in the card's own version: v1.0's
 * `securitySchemes` (one-of objects) and `securityRequirements`, or v0.3's
 * OpenAPI-style schemes and `security`. Either requirement satisfies it:
 * the bearer token with X-Workspace-ID, or the token alone.
 */
function proxySecurity(v1: boolean): JsonObject {
  if (v1) {
    return {
      securitySchemes: {
        [BEARER_SCHEME]: { httpAuthSecurityScheme: { scheme: 'Bearer', description: BEARER_TEXT } },
        [WORKSPACE_SCHEME]: { apiKeySecurityScheme: { location: 'header', name: 'X-Workspace-ID', description: WORKSPACE_TEXT } },
      },
      securityRequirements: [{ schemes: { [BEARER_SCHEME]: { list: [] }, [WORKSPACE_SCHEME]: { list: [] } } }, { schemes: { [BEARER_SCHEME]: { list: [] } } }],
    }
  }
  return {
    securitySchemes: {
      [BEARER_SCHEME]: { type: 'http', scheme: 'bearer', description: BEARER_TEXT },
      [WORKSPACE_SCHEME]: { type: 'apiKey', in: 'header', name: 'X-Workspace-ID', description: WORKSPACE_TEXT },
    },
    security: [{ [BEARER_SCHEME]: [], [WORKSPACE_SCHEME]: [] }, { [BEARER_SCHEME]: [] }],
  }
}

/**
 * The card as Switchboard serves it (the public card and the extended one):
 * every JSON-RPC and HTTP+JSON interface points at the proxy, other
 * interfaces (gRPC) are left out, and the security declared is the proxy's
 * (the agent's own schemes, skills' included, are Switchboard's to satisfy,
 * not the caller's). A card with `supportedInterfaces` is written in v1.0's
 * form; one without, in v0.3's.
 */
export function servedAgentCard(card: JsonObject, proxyUrl: string): JsonObject {
  const served: JsonObject = { ...card }
  const carried = (entry: unknown, key: 'protocolBinding' | 'transport') => isObject(entry) && bindingOf(entry[key]) !== null
  if (Array.isArray(card.supportedInterfaces)) {
    served.supportedInterfaces = card.supportedInterfaces.filter((entry) => carried(entry, 'protocolBinding')).map((entry) => ({ ...(entry as JsonObject), url: proxyUrl }))
  }
  let additional: JsonObject[] | null = null
  if (Array.isArray(card.additionalInterfaces)) {
    additional = card.additionalInterfaces.filter((entry) => carried(entry, 'transport')).map((entry) => ({ ...(entry as JsonObject), url: proxyUrl }))
    served.additionalInterfaces = additional
  }
  if ('url' in card) served.url = proxyUrl
  // A v0.3 card's `url` answers its preferred transport: one the proxy does not carry gives way to one it does.
  if (card.preferredTransport !== undefined && bindingOf(card.preferredTransport) === null) served.preferredTransport = additional?.map((entry) => bindingOf(entry.transport))[0] ?? 'JSONRPC'
  if (Array.isArray(card.skills)) {
    served.skills = card.skills.map((skill) => {
      if (!isObject(skill) || (!('security' in skill) && !('securityRequirements' in skill))) return skill
      const { security: _security, securityRequirements: _requirements, ...rest } = skill
      return rest
    })
  }
  delete served.security
  delete served.securityRequirements
  return { ...served, ...proxySecurity(Array.isArray(card.supportedInterfaces)) }
}
