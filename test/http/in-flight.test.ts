/**
 * The serving layer's record of a request: the abort signal handlers see is
 * made only when one asks, and is aborted whether it was asked for before or
 * after the request ended (caller gone, or shutdown); `onGone` listeners are
 * told once, the same way, without a signal.
 */
import { describe, expect, it } from 'bun:test'
import { InFlight } from '../../src/http/served'

const socket = { remoteAddress: '192.0.2.7' }

describe('a request in flight', () => {
  it('aborts a signal asked for before the caller went away', () => {
    const entry = new InFlight('id-1', socket.remoteAddress)
    const signal = entry.signal
    expect(signal.aborted).toBe(false)
    entry.abort('caller')
    expect(signal.aborted).toBe(true)
    expect(entry.signal).toBe(signal)
  })

  it('hands an aborted signal to a handler that asks only after the request was ended', () => {
    const entry = new InFlight('id-2', socket.remoteAddress)
    entry.abort('shutdown')
    expect(entry.signal.aborted).toBe(true)
  })

  it('ends an in-process request when its own signal aborts, with no address', () => {
    const own = new AbortController()
    const entry = InFlight.of(new Request('http://127.0.0.1/message', { signal: own.signal }), 'id-3')
    expect(entry.remoteAddress).toBeUndefined()
    const signal = entry.signal
    own.abort()
    expect(signal.aborted).toBe(true)
    expect(entry.clientGone).toBe(true)
  })

  it('tells each onGone listener once, with the first reason, at once when the request already ended, and never after it stopped listening', () => {
    const entry = new InFlight('id-4', socket.remoteAddress)
    const told: string[] = []
    entry.onGone((reason) => told.push(`first ${reason}`))
    const stop = entry.onGone(() => told.push('stopped'))
    entry.onGone((reason) => told.push(`second ${reason}`))
    stop()
    entry.abort('shutdown')
    entry.abort('caller')
    expect(told).toEqual(['first shutdown', 'second shutdown'])
    entry.onGone((reason) => told.push(`late ${reason}`))
    expect(told).toEqual(['first shutdown', 'second shutdown', 'late shutdown'])
  })

  it('tells onGone listeners of an in-process request through its own signal', () => {
    const own = new AbortController()
    const request = new Request('http://127.0.0.1/workspaces', { signal: own.signal })
    const told: string[] = []
    const entry = InFlight.of(request, 'id-5')
    entry.onGone((reason) => told.push(`kept ${reason}`))
    const stop = entry.onGone(() => told.push('stopped'))
    stop()
    own.abort()
    expect(told).toEqual(['kept caller'])
    entry.onGone(() => told.push('late'))
    expect(told).toEqual(['kept caller', 'late'])
  })
})
