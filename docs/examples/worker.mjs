// A worker speaking VideoSDK's worker protocol on /agent, in Node with the
// `ws` package (installed with Switchboard's dependencies): it registers,
// accepts every job offered, reports it running, and prints one line per event.
// Real workers use VideoSDK's own BackendConnection (see docs/workers.md).
//
//   node docs/examples/worker.mjs <agent name> [ws://127.0.0.1:8700]
//
// It exits when its socket closes (Switchboard stopped, or the worker was dropped).
import WebSocket from 'ws'

const [agentName = 'support-agent', base = 'ws://127.0.0.1:8700'] = process.argv.slice(2)
const token = 'worker-token' // any token while Switchboard runs with --auth none
const socket = new WebSocket(`${base.replace(/\/$/, '')}/agent`, { headers: { Authorization: token } })
const send = (frame) => socket.send(JSON.stringify(frame))

socket.on('open', () => send({ type: 'register', worker_id: '', agent_name: agentName, token, max_processes: 4, load_threshold: 0.75 }))
socket.on('message', (data) => {
  const frame = JSON.parse(String(data))
  switch (frame.type) {
    case 'register':
      if (!frame.success) console.log(`registration refused: ${frame.message}`)
      else console.log(`worker ${frame.worker_id} registered for ${agentName}`)
      break
    case 'availability_request':
      send({ type: 'availability_response', job_id: frame.job_id, available: true, token })
      break
    case 'job_assignment':
      console.log(`job ${frame.job_id} assigned (room ${frame.room_id}): running`)
      send({ type: 'job_update', job_id: frame.job_id, status: 'running' })
      break
    case 'job_termination':
      console.log(`job ${frame.job_id} terminated: ${frame.reason}`)
      break
  }
})
socket.on('error', (error) => console.error(`worker: ${error.message}`))
socket.on('close', (code) => {
  console.log(`socket closed (${code})`)
  process.exit(0)
})
