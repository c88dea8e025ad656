/**
 * The serving layer's record of a request: the abort signal handlers see is
 * made only when one asks, and is aborted whether it was asked for before or
 * after the request ended (caller gone, or shutdown); `onGone` listeners are
 * told once, the same way, without a signal.
 */
import { describe, expect, it } from 'bun:test'
import { InFlight } from '../../src/server'
import { remoteAddressOf, servedOf, servedRequests } from '../../src/served'

const socket = { remoteAddress: '192.0.2.7' }

describe('a request in flight', () => {
  it('aborts a signal asked for before the caller went away', () => {
    const entry = new InFlight('/message', 'id-1', socket)
    const signal = entry.signal
    expect(signal.aborted).toBe(false)
    entry.abort('caller')
    expect(signal.aborted).toBe(true)
    expect(entry.signal).toBe(signal)
  })

  it('hands an aborted signal to a handler that asks only after the request was ended', () => {
    const entry = new InFlight('/message', 'id-2', socket)
    entry.abort('shutdown')
    expect(entry.signal.aborted).toBe(true)
  })

  it('gives handlers the served signal and address, and falls back to the request itself in-process', () => {
    const served = new Request('http://127.0.0.1/message')
    const entry = new InFlight('/message', 'id-3', socket)
    servedRequests.set(served, entry)
    expect(remoteAddressOf(served)).toBe('192.0.2.7')
    const signal = servedOf(served).signal
    entry.abort('caller')
    expect(signal.aborted).toBe(true)

    const own = new AbortController()
    const inProcess = new Request('http://127.0.0.1/message', { signal: own.signal })
    expect(remoteAddressOf(inProcess)).toBeUndefined()
    own.abort()
    expect(servedOf(inProcess).signal.aborted).toBe(true)
  })

  it('tells each onGone listener once, with the first reason, at once when the request already ended, and never after it stopped listening', () => {
    const entry = new InFlight('/workspaces/:id/a2a', 'id-4', socket)
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
    servedOf(request).onGone((reason) => told.push(`kept ${reason}`))
    const stop = servedOf(request).onGone(() => told.push('stopped'))
    stop()
    own.abort()
    expect(told).toEqual(['kept caller'])
    servedOf(request).onGone(() => told.push('late'))
    expect(told).toEqual(['kept caller', 'late'])
  })
})
