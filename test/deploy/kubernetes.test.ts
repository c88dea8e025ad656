import { describe, expect, it } from 'bun:test'
import { resolve } from 'node:path'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { Service } from 'kubernetes-models/v1/Service'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { SETTINGS, envName } from '../../src/config'
import { ROOT } from '../support/process'

// Each kind the example uses, with the model whose validate() checks it against Kubernetes' own OpenAPI schema.
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1 Deployment': Deployment,
  'v1 Service': Service,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
}

interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string }
  spec: any
}

const manifests = Bun.YAML.parse(await Bun.file(resolve(ROOT, 'deploy/kubernetes.yaml')).text()) as Manifest[]
const find = (kind: string, name: string) => {
  const found = manifests.find((manifest) => manifest.kind === kind && manifest.metadata.name === name)
  if (found === undefined) throw new Error(`deploy/kubernetes.yaml has no ${kind} ${name}`)
  return found
}

describe('deploy/kubernetes.yaml', () => {
  it('is valid against the Kubernetes schema, every document', () => {
    expect(manifests.length).toBeGreaterThan(0)
    for (const manifest of manifests) {
      const Model = MODELS[`${manifest.apiVersion} ${manifest.kind}`]
      if (Model === undefined) throw new Error(`no schema for ${manifest.apiVersion} ${manifest.kind}`)
      expect(() => new Model(manifest as never).validate()).not.toThrow()
    }
  })

  it('the schema check catches a wrong field type (it checks something)', () => {
    const broken = structuredClone(find('Deployment', 'switchboard'))
    broken.spec.replicas = 'two'
    expect(() => new Deployment(broken as never).validate()).toThrow('replicas must be integer')
  })

  const container = () => find('Deployment', 'switchboard').spec.template.spec.containers[0]

  it('probes /healthz for liveness and /readyz for readiness, on the container port', () => {
    const { livenessProbe, readinessProbe, ports } = container()
    expect(livenessProbe.httpGet.path).toBe('/healthz')
    expect(readinessProbe.httpGet.path).toBe('/readyz')
    expect(ports.map((port: { name: string }) => port.name)).toContain(livenessProbe.httpGet.port)
  })

  it('drains before SIGTERM (preStop) within a grace period longer than the drain and the shutdown timeout', () => {
    const deployment = find('Deployment', 'switchboard')
    const env = Object.fromEntries(container().env.map(({ name, value }: { name: string; value: string }) => [name, value]))
    const drain = container().lifecycle.preStop.sleep.seconds
    expect(drain).toBeGreaterThan(0)
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(drain + Number(env.SWITCHBOARD_SHUTDOWN_TIMEOUT_S))
  })

  it('runs on the Redis backend, with settings Switchboard has, reaching the Redis service', () => {
    const env = Object.fromEntries(container().env.map(({ name, value }: { name: string; value: string }) => [name, value]))
    const known = new Set(SETTINGS.map((key) => envName(key)))
    for (const name of Object.keys(env)) expect(known.has(name) ? name : `${name} is no Switchboard setting`).toBe(name)
    expect(env.SWITCHBOARD_BACKEND).toBe('redis')
    const redis = find('Service', new URL(env.SWITCHBOARD_REDIS_URL).hostname)
    expect(redis.spec.ports[0].port).toBe(Number(new URL(env.SWITCHBOARD_REDIS_URL).port))
  })

  it('keeps instances up in a voluntary disruption (PodDisruptionBudget) selecting the same pods', () => {
    const budget = find('PodDisruptionBudget', 'switchboard')
    const deployment = find('Deployment', 'switchboard')
    expect(budget.spec.minAvailable).toBeGreaterThanOrEqual(1)
    expect(budget.spec.minAvailable).toBeLessThan(deployment.spec.replicas)
    expect(budget.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels)
  })

  it('runs as the image user, non-root, read-only, without privileges', () => {
    const pod = find('Deployment', 'switchboard').spec.template.spec
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 })
    expect(container().securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
  })
})
