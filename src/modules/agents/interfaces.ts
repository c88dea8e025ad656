/**
 * Where an agent answers JSON-RPC, by its own card: a v1.0 card lists its
 * interfaces in `supportedInterfaces` (`protocolBinding` JSONRPC); a v0.3
 * card has `url` for its `preferredTransport` (JSONRPC when not said) and
 * `additionalInterfaces`. The registered URL stands in when the card
 * declares none.
 */

type JsonObject = Record<string, unknown>
const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value)

/** A binding as a card names it: JSON-RPC, or not said (JSON-RPC by default, as the rewritten card also counts it). */
const isJsonRpc = (binding: unknown) => binding === undefined || (typeof binding === 'string' && binding.toUpperCase() === 'JSONRPC')

/** Whether a protocol version ("1.0", "0.3.0") is version 1 or later; null when not given. */
const isV1Version = (version: unknown): boolean | null => (typeof version === 'string' && version.trim() !== '' ? Number.parseInt(version, 10) >= 1 : null)

/**
 * The URL of the card's JSON-RPC interface for a request of A2A v1.0 (`v1`)
 * or earlier: the first interface of the request's major version, else the
 * first JSON-RPC interface; null when the card declares none.
 */
export function jsonRpcUrlOf(card: JsonObject | null, v1: boolean): string | null {
  if (card === null) return null
  const found: { url: string; v1: boolean | null }[] = []
  if (Array.isArray(card.supportedInterfaces)) {
    for (const entry of card.supportedInterfaces) {
      if (isObject(entry) && typeof entry.url === 'string' && isJsonRpc(entry.protocolBinding)) found.push({ url: entry.url, v1: isV1Version(entry.protocolVersion) })
    }
  }
  const cardVersion = isV1Version(card.protocolVersion)
  if (typeof card.url === 'string' && isJsonRpc(card.preferredTransport)) found.push({ url: card.url, v1: cardVersion })
  if (Array.isArray(card.additionalInterfaces)) {
    for (const entry of card.additionalInterfaces) {
      if (isObject(entry) && typeof entry.url === 'string' && typeof entry.transport === 'string' && isJsonRpc(entry.transport)) found.push({ url: entry.url, v1: cardVersion })
    }
  }
  return (found.find((entry) => entry.v1 === v1) ?? found[0])?.url ?? null
}
