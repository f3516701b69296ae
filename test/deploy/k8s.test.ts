/**
 * deploy/k8s, checked offline. There is no cluster and no kubeconform schema here, so this is the
 * schema check we accept: every YAML document parses, carries apiVersion/kind/metadata.name, and the
 * fields that decide whether the deployment works are asserted one by one (selectors, ports, probes,
 * security context, volumes, env references, shutdown budget, autoscaling, monitoring). The
 * configuration itself goes through the server's own loadConfig, and the publish Job's script runs.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigError, loadConfig } from '../../src/config.js';
import { scanRepository } from '../../src/registry/repository.js';
import {
  LINEAR,
  makeRepository,
  SHIPPED_MODELS,
  startApp,
  versionedEntries,
  versionedModel,
  versionedPredictions,
} from '../helpers.js';

const K8S = fileURLToPath(new URL('../../deploy/k8s/', import.meta.url));
const EXAMPLES = path.join(K8S, 'examples');
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

type Labels = Record<string, string>;
interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: unknown[];
}
interface KeyRef {
  name: string;
  key: string;
  optional?: boolean;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { configMapKeyRef?: KeyRef; secretKeyRef?: KeyRef };
}
interface EnvFrom {
  prefix?: string;
  configMapRef?: { name: string };
  secretRef?: { name: string };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  ports?: Array<{ name?: string; containerPort: number }>;
  env?: EnvVar[];
  envFrom?: EnvFrom[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    runAsNonRoot?: boolean;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{ name: string; persistentVolumeClaim?: { claimName: string; readOnly?: boolean } }>;
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    runAsGroup?: number;
    fsGroup?: number;
    seccompProfile?: { type: string };
  };
  terminationGracePeriodSeconds?: number;
  topologySpreadConstraints?: Array<{ topologyKey: string; labelSelector?: LabelSelector }>;
  affinity?: {
    podAntiAffinity?: Record<string, Array<{ topologyKey?: string; podAffinityTerm?: { topologyKey: string } }>>;
  };
}
interface PodTemplate {
  metadata: { labels: Labels };
  spec: PodSpec;
}
interface DeploymentSpec {
  replicas?: number;
  selector: LabelSelector;
  template: PodTemplate;
}
interface ServiceSpec {
  type?: string;
  clusterIP?: string;
  publishNotReadyAddresses?: boolean;
  selector?: Labels;
  ports: Array<{ name?: string; port: number; targetPort?: string | number }>;
}
interface HpaSpec {
  scaleTargetRef: { apiVersion: string; kind: string; name: string };
  minReplicas?: number;
  maxReplicas: number;
  metrics?: Array<{
    type: string;
    resource?: { name: string; target: { type: string; averageUtilization?: number } };
  }>;
}
interface PdbSpec {
  minAvailable?: number | string;
  maxUnavailable?: number | string;
  selector: LabelSelector;
}
interface ServiceMonitorSpec {
  selector: LabelSelector;
  namespaceSelector?: unknown;
  endpoints: Array<{ port?: string; targetPort?: unknown; path?: string }>;
}
interface PvcSpec {
  accessModes: string[];
  resources: { requests: { storage: string } };
}
interface Manifest<Spec = unknown> {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels };
  spec: Spec;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
interface Kustomization {
  namespace?: string;
  resources: string[];
  images?: Array<{ name: string; newName?: string; newTag?: string }>;
}

const yamlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((file) => /\.ya?ml$/.test(file))
    .sort();

/** Every document of a multi-document YAML file; a syntax error or a duplicate key fails the test. */
function documentsOf(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).flatMap((document) => {
    expect(document.errors.map(String), file).toEqual([]);
    const value = document.toJS() as Manifest | null;
    return value === null ? [] : [value];
  });
}

const kustomization = documentsOf(path.join(K8S, 'kustomization.yaml'))[0] as unknown as Kustomization;
/** What `kubectl apply -k deploy/k8s` applies. */
const applied = kustomization.resources.flatMap((file) => documentsOf(path.join(K8S, file)));
/** Created by hand, following their comments: the admin Secret, the publish Job. */
const examples = yamlFiles(EXAMPLES).flatMap((file) => documentsOf(path.join(EXAMPLES, file)));
const everything = [...applied, ...examples];

function only<Spec>(kind: string, from: Manifest[] = applied): Manifest<Spec> {
  const found = from.filter((manifest) => manifest.kind === kind);
  expect(
    found.map((manifest) => manifest.metadata.name),
    `one ${kind}`,
  ).toHaveLength(1);
  return found[0] as Manifest<Spec>;
}
const named = (kind: string, name: string) =>
  everything.find((manifest) => manifest.kind === kind && manifest.metadata.name === name);

const deployment = only<DeploymentSpec>('Deployment');
const pod = deployment.spec.template;
const container = pod.spec.containers.find((c) => c.name === 'wattserve') as Container;
const services = applied.filter((manifest) => manifest.kind === 'Service') as Manifest<ServiceSpec>[];
const clusterIpService = services.find((service) => service.spec.clusterIP !== 'None') as Manifest<ServiceSpec>;
const headlessService = services.find((service) => service.spec.clusterIP === 'None') as Manifest<ServiceSpec>;
type Job = Manifest<{ template: PodTemplate }>;
const jobs = examples.filter((manifest) => manifest.kind === 'Job') as Job[];
function jobNamed(name: string): Job {
  const found = jobs.find((manifest) => manifest.metadata.name === name);
  expect(found, `Job ${name}`).toBeDefined();
  return found as Job;
}
const publishJob = jobNamed('wattserve-publish-pod-power-linear-2');
const seedJob = jobNamed('wattserve-seed-models');
const modelVolume = pod.spec.volumes?.find((volume) => volume.persistentVolumeClaim !== undefined);
const modelMount = container.volumeMounts?.find((mount) => mount.name === modelVolume?.name);

/** Does the selector pick these labels? Only matchLabels is used here, so only that is evaluated. */
function selects(selector: LabelSelector | Labels | undefined, labels: Labels | undefined): boolean {
  if (selector === undefined) return false;
  const { matchLabels, matchExpressions } = (
    'matchLabels' in selector || 'matchExpressions' in selector ? selector : { matchLabels: selector }
  ) as LabelSelector;
  expect(matchExpressions, 'matchExpressions are not evaluated by this test').toBeUndefined();
  const wanted = Object.entries(matchLabels ?? {});
  return wanted.length > 0 && wanted.every(([key, value]) => labels?.[key] === value);
}

/** The environment the wattserve container starts with (secrets left out): what loadConfig reads. */
function containerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    const configMap = source.configMapRef && named('ConfigMap', source.configMapRef.name);
    for (const [key, value] of Object.entries(configMap?.data ?? {})) env[`${source.prefix ?? ''}${key}`] = value;
  }
  for (const variable of container.env ?? []) {
    const ref = variable.valueFrom?.configMapKeyRef;
    const value = ref ? named('ConfigMap', ref.name)?.data?.[ref.key] : variable.value;
    if (value !== undefined) env[variable.name] = value;
  }
  return env;
}

/** Every variable name the container is given, from env and envFrom alike. */
function containerEnvNames(target: Container): string[] {
  const fromSources = (target.envFrom ?? []).flatMap((source) => {
    const object = source.configMapRef
      ? named('ConfigMap', source.configMapRef.name)
      : source.secretRef && named('Secret', source.secretRef.name);
    return Object.keys({ ...object?.data, ...object?.stringData }).map((key) => `${source.prefix ?? ''}${key}`);
  });
  return [...fromSources, ...(target.env ?? []).map((variable) => variable.name)];
}

/** Resolves a probe or Service port (a name or a number) to a container port number. */
function containerPort(port: string | number | undefined): number | undefined {
  const ports = container.ports ?? [];
  return typeof port === 'number'
    ? ports.find((p) => p.containerPort === port)?.containerPort
    : ports.find((p) => p.name === port)?.containerPort;
}

function cpuCores(quantity: string | undefined): number {
  const match = /^(\d+(?:\.\d+)?)(m?)$/.exec(String(quantity));
  if (!match) throw new Error(`not a CPU quantity: ${quantity}`);
  return Number(match[1]) / (match[2] === 'm' ? 1000 : 1);
}

function bytes(quantity: string | undefined): number {
  const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(String(quantity));
  if (!match) throw new Error(`not a memory quantity: ${quantity}`);
  const units: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 };
  return Number(match[1]) * (units[match[2] ?? ''] ?? 1);
}

describe('deploy/k8s: the manifests', () => {
  it('kustomization.yaml lists every manifest in deploy/k8s, and every file it lists exists', () => {
    const manifests = yamlFiles(K8S).filter((file) => file !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(manifests);
  });

  it('leaves the example Secret and the Jobs out of `kubectl apply -k` (they are created by hand)', () => {
    expect(examples.map((manifest) => manifest.kind).sort()).toEqual(['Job', 'Job', 'Secret']);
    expect(applied.filter((manifest) => manifest.kind === 'Secret' || manifest.kind === 'Job')).toEqual([]);
  });

  it('has every document parse, with a known apiVersion for its kind and a valid metadata.name', () => {
    const apiVersions: Record<string, string> = {
      Namespace: 'v1',
      ConfigMap: 'v1',
      Secret: 'v1',
      Service: 'v1',
      PersistentVolumeClaim: 'v1',
      Deployment: 'apps/v1',
      Job: 'batch/v1',
      HorizontalPodAutoscaler: 'autoscaling/v2',
      PodDisruptionBudget: 'policy/v1',
      ServiceMonitor: 'monitoring.coreos.com/v1',
    };
    for (const manifest of everything) {
      expect(apiVersions[manifest.kind], `${manifest.kind} ${manifest.metadata?.name}`).toBe(manifest.apiVersion);
      // DNS-1123 labels: what a Service name must be, and what the others are kept to here.
      expect(manifest.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
    }
    const ids = everything.map((manifest) => `${manifest.kind}/${manifest.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
    expect(applied.map((manifest) => manifest.kind).sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'Namespace',
      'PersistentVolumeClaim',
      'PodDisruptionBudget',
      'Service',
      'Service',
      'ServiceMonitor',
    ]);
  });

  it('puts everything in the wattserve namespace, which it creates', () => {
    expect(kustomization.namespace).toBe('wattserve');
    expect(only('Namespace').metadata.name).toBe('wattserve');
    for (const manifest of examples) expect(manifest.metadata.namespace).toBe('wattserve');
  });

  it('uses the image the kustomization overrides (a placeholder to change to your build)', () => {
    const [image] = container.image.split(':');
    expect(kustomization.images?.map((entry) => entry.name)).toContain(image);
  });
});

describe('deploy/k8s: the Deployment', () => {
  it('runs at least two replicas, and its selector matches the labels its pods carry', () => {
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(selects(deployment.spec.selector, pod.metadata.labels)).toBe(true);
  });

  it('names its ports http (8080, PORT) and metrics (9464, METRICS_PORT)', () => {
    const ports = Object.fromEntries((container.ports ?? []).map((port) => [port.name, port.containerPort]));
    expect(ports).toEqual({ http: 8080, metrics: 9464 });
    const config = loadConfig(containerEnv());
    expect([config.port, config.metricsPort]).toEqual([ports.http, ports.metrics]);
  });

  it('is ready when GET /ping says so, and alive while GET /live answers, both on the http port', () => {
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/ping', port: 'http' });
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/live', port: 'http' });
    expect(containerPort(container.readinessProbe?.httpGet?.port)).toBe(8080);
  });

  it('gives slow model loads a startup probe on /ping of minutes, before liveness counts', () => {
    const startup = container.startupProbe;
    expect(startup?.httpGet).toEqual({ path: '/ping', port: 'http' });
    const budget = (startup?.periodSeconds ?? 10) * (startup?.failureThreshold ?? 3);
    expect(budget).toBeGreaterThanOrEqual(120);
  });

  it('runs as a fixed non-root user with a read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    const podSecurity = pod.spec.securityContext;
    expect(podSecurity?.runAsNonRoot).toBe(true);
    expect(podSecurity?.runAsUser).toBeGreaterThan(0);
    expect(podSecurity?.fsGroup).toBeGreaterThan(0);
    expect(container.securityContext?.seccompProfile?.type ?? podSecurity?.seccompProfile?.type).toBe('RuntimeDefault');
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(container.securityContext?.capabilities?.add).toBeUndefined();
  });

  it('requests and limits CPU and memory: up to one core, and memory above the 250 MiB the models take', () => {
    const { requests, limits } = container.resources ?? {};
    expect(cpuCores(requests?.cpu)).toBeGreaterThan(0);
    expect(cpuCores(limits?.cpu)).toBeGreaterThanOrEqual(1);
    expect(bytes(requests?.memory)).toBeGreaterThanOrEqual(256 * 2 ** 20);
    expect(bytes(limits?.memory)).toBeGreaterThan(bytes(requests?.memory));
  });

  it('mounts only volumes it declares', () => {
    for (const podSpec of [pod.spec, ...jobs.map((j) => j.spec.template.spec)]) {
      const declared = (podSpec.volumes ?? []).map((volume) => volume.name);
      const mounted = [...podSpec.containers, ...(podSpec.initContainers ?? [])].flatMap((c) =>
        (c.volumeMounts ?? []).map((mount) => mount.name),
      );
      expect(mounted.length).toBeGreaterThan(0);
      expect(mounted.filter((name) => !declared.includes(name))).toEqual([]);
    }
  });

  it('claims the PVC wattserve-models, which exists and is ReadWriteMany, read-write (admin uploads write there)', () => {
    expect(modelVolume?.persistentVolumeClaim?.claimName).toBe('wattserve-models');
    const claim = named('PersistentVolumeClaim', 'wattserve-models') as Manifest<PvcSpec> | undefined;
    expect(claim?.spec.accessModes).toEqual(['ReadWriteMany']);
    expect(claim?.spec.resources.requests.storage).toMatch(/^\d+(Mi|Gi|Ti)$/);
    expect(modelMount?.readOnly ?? false).toBe(false);
    expect(modelVolume?.persistentVolumeClaim?.readOnly ?? false).toBe(false);
  });

  it('sets MODEL_REPOSITORY to where the model volume is mounted', () => {
    expect(modelMount?.mountPath).toBeDefined();
    expect(loadConfig(containerEnv()).modelRepository).toBe(modelMount?.mountPath);
  });

  it('sets MODEL_POLL_INTERVAL_MS, so every replica picks up versions written to the shared volume', () => {
    expect(loadConfig(containerEnv()).modelPollIntervalMs).toBeGreaterThan(0);
  });

  it('points every configMapKeyRef, secretKeyRef and envFrom at an object and key that exist', () => {
    const refs = [pod.spec, ...jobs.map((j) => j.spec.template.spec)].flatMap((podSpec) =>
      [...podSpec.containers, ...(podSpec.initContainers ?? [])].flatMap((c) => [
        ...(c.envFrom ?? []).map((source) =>
          source.configMapRef
            ? { kind: 'ConfigMap', name: source.configMapRef.name, key: undefined }
            : { kind: 'Secret', name: source.secretRef?.name ?? '', key: undefined },
        ),
        ...(c.env ?? []).flatMap(({ valueFrom }) => [
          ...(valueFrom?.configMapKeyRef ? [{ kind: 'ConfigMap', ...valueFrom.configMapKeyRef }] : []),
          ...(valueFrom?.secretKeyRef ? [{ kind: 'Secret', ...valueFrom.secretKeyRef }] : []),
        ]),
      ]),
    );
    expect(refs.map((ref) => ref.kind).sort()).toEqual(['ConfigMap', 'Secret']);
    for (const ref of refs) {
      const object = named(ref.kind, ref.name);
      expect(object, `${ref.kind} ${ref.name}`).toBeDefined();
      if (ref.key !== undefined) expect(Object.keys({ ...object?.data, ...object?.stringData })).toContain(ref.key);
    }
  });

  it('is configured with values wattserve accepts', () => {
    expect(() => loadConfig(containerEnv())).not.toThrow();
  });

  it('uses only environment variables documented in README.md’s configuration table', () => {
    const readme = readFileSync(README, 'utf8');
    const section = readme.slice(
      readme.indexOf('\n## Configuration'),
      readme.indexOf('\n## ', readme.indexOf('\n## Configuration') + 1),
    );
    const documented = section
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...(line.split('|')[1] ?? '').matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map(([, name]) => name));
    expect(documented.length).toBeGreaterThan(10);
    expect(containerEnvNames(container).filter((name) => !documented.includes(name))).toEqual([]);
  });

  it('refuses to start with the example Secret’s placeholder (it must be replaced)', () => {
    const placeholder = named('Secret', 'wattserve-admin')?.stringData?.ADMIN_JWT_SECRET;
    expect(placeholder).toBeDefined();
    expect(() => loadConfig({ ...containerEnv(), ADMIN_JWT_SECRET: placeholder })).toThrow(ConfigError);
    expect(() => loadConfig({ ...containerEnv(), ADMIN_JWT_SECRET: 'x'.repeat(64) })).not.toThrow();
  });

  it('gives shutdown its time: terminationGracePeriodSeconds outlasts the preStop pause plus SHUTDOWN_TIMEOUT_MS', () => {
    const shutdownMs = Number(containerEnv().SHUTDOWN_TIMEOUT_MS);
    expect(shutdownMs).toBeGreaterThan(0);
    const preStopMs = (container.lifecycle?.preStop?.sleep?.seconds ?? 0) * 1000;
    expect((pod.spec.terminationGracePeriodSeconds ?? 30) * 1000).toBeGreaterThan(preStopMs + shutdownMs);
  });

  it('spreads replicas across nodes', () => {
    const spread = (pod.spec.topologySpreadConstraints ?? []).filter(
      (constraint) =>
        constraint.topologyKey === 'kubernetes.io/hostname' && selects(constraint.labelSelector, pod.metadata.labels),
    );
    const antiAffinity = Object.values(pod.spec.affinity?.podAntiAffinity ?? {})
      .flat()
      .filter((term) => (term.podAffinityTerm?.topologyKey ?? term.topologyKey) === 'kubernetes.io/hostname');
    expect(spread.length + antiAffinity.length).toBeGreaterThan(0);
  });
});

describe('deploy/k8s: Services, autoscaling, disruptions and monitoring', () => {
  it('has a ClusterIP Service mapping port 80 (http) and 9464 (metrics) to the pods’ ports of those names', () => {
    expect(clusterIpService.metadata.name).toBe('wattserve');
    expect(clusterIpService.spec.type ?? 'ClusterIP').toBe('ClusterIP');
    const ports = clusterIpService.spec.ports.map(({ name, port, targetPort }) => [
      name,
      port,
      containerPort(targetPort),
    ]);
    expect(ports).toEqual([
      ['http', 80, 8080],
      ['metrics', 9464, 9464],
    ]);
  });

  it('has a headless Service listing every replica, not-ready ones included, for DNS discovery of metrics only', () => {
    expect(headlessService.spec.publishNotReadyAddresses).toBe(true);
    expect(headlessService.spec.ports.map(({ name, targetPort }) => [name, containerPort(targetPort)])).toEqual([
      ['metrics', 9464],
    ]);
  });

  it('has every Service select the Deployment’s pods, and every targetPort name a container port', () => {
    expect(services).toHaveLength(2);
    for (const service of services) {
      expect(selects(service.spec.selector, pod.metadata.labels), service.metadata.name).toBe(true);
      for (const port of service.spec.ports) {
        expect(port.name).toMatch(/^[a-z][-a-z0-9]{0,14}$/);
        expect(containerPort(port.targetPort ?? port.port), `${service.metadata.name} ${port.name}`).toBeDefined();
      }
    }
  });

  it('autoscales the Deployment on CPU utilisation from 2 to 10 replicas', () => {
    const hpa = only<HpaSpec>('HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    expect([hpa.spec.minReplicas, hpa.spec.maxReplicas]).toEqual([2, 10]);
    expect(hpa.spec.metrics).toEqual([
      {
        type: 'Resource',
        resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: expect.any(Number) } },
      },
    ]);
    // Utilisation is a share of the request: without one the HPA cannot compute it.
    const target = hpa.spec.metrics?.[0]?.resource?.target.averageUtilization ?? 0;
    const targetCores = (target / 100) * cpuCores(container.resources?.requests?.cpu);
    // Scale out before a pod's one busy core (the event loop) is saturated.
    expect(targetCores).toBeGreaterThan(0.3);
    expect(targetCores).toBeLessThan(cpuCores(container.resources?.limits?.cpu));
  });

  it('has a PodDisruptionBudget over the Deployment’s pods that lets one go at a time', () => {
    const pdb = only<PdbSpec>('PodDisruptionBudget');
    expect(selects(pdb.spec.selector, pod.metadata.labels)).toBe(true);
    expect(pdb.spec.maxUnavailable === 1 || pdb.spec.minAvailable === 1).toBe(true);
  });

  it('has a ServiceMonitor scraping /metrics on the `metrics` port of exactly one Service, which has that port', () => {
    const monitor = only<ServiceMonitorSpec>('ServiceMonitor');
    const scraped = services.filter((service) => selects(monitor.spec.selector, service.metadata.labels));
    // The headless Service selects the same pods: picking both would scrape every replica twice.
    expect(scraped.map((service) => service.metadata.name)).toEqual([clusterIpService.metadata.name]);
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'metrics', path: '/metrics' })]);
    expect(scraped[0]?.spec.ports.map((port) => port.name)).toContain('metrics');
  });
});

describe('deploy/k8s/examples: the Jobs that write the model volume', () => {
  const run = promisify(execFile);
  const scratch: string[] = [];
  afterEach(async () => Promise.all(scratch.splice(0).map((dir) => rm(dir, { recursive: true, force: true }))));

  const containerOf = (manifest: Job) => manifest.spec.template.spec.containers[0] as Container;
  const envOf = (manifest: Job) =>
    Object.fromEntries((containerOf(manifest).env ?? []).map((variable) => [variable.name, variable.value ?? '']));

  /**
   * Runs a Job's script here, with its env and these overrides. `wget` fetches a local file; `mv` is
   * the real one, logged: the result lists each call's [from, to].
   */
  async function runJob(manifest: Job, env: Record<string, string>) {
    const bin = await mkdtemp(path.join(tmpdir(), 'wattserve-bin-'));
    scratch.push(bin);
    const standIns: Record<string, string[]> = {
      // `wget -q -O <file> <url>`, with a local path for the URL.
      wget: [
        'while [ $# -gt 0 ]; do case "$1" in -O) out=$2; shift 2;; -*) shift;; *) url=$1; shift;; esac; done',
        'cp "$url" "$out"',
      ],
      // `mv`, logged, then the real one (on PATH once this folder, which comes first, is dropped).
      mv: ['{ printf \'%s\\t\' "$@"; echo; } >> "$MV_LOG"', 'PATH=$(echo "$PATH" | cut -d: -f2-) exec mv "$@"'],
    };
    for (const [name, lines] of Object.entries(standIns)) {
      await writeFile(path.join(bin, name), ['#!/bin/sh', ...lines, ''].join('\n'));
      await chmod(path.join(bin, name), 0o755);
    }
    const [shell, ...args] = containerOf(manifest).command ?? [];
    const outcome = await run(shell ?? 'sh', args, {
      env: { PATH: `${bin}:${process.env.PATH}`, MV_LOG: path.join(bin, 'mv.log'), ...envOf(manifest), ...env },
    }).then(
      () => ({ ok: true, stderr: '' }),
      (error: { stderr: string }) => ({ ok: false, stderr: error.stderr }),
    );
    const moves = await readFile(path.join(bin, 'mv.log'), 'utf8').catch(() => '');
    // Each call's operands (options left out): [from, to].
    const calls = moves.split('\n').filter(Boolean);
    return {
      ...outcome,
      moves: calls.map((line) => line.split('\t').filter((arg) => arg !== '' && !arg.startsWith('-'))),
    };
  }

  /** Every file under a folder, by relative path, with its content. */
  async function treeOf(root: string, dir = root): Promise<Record<string, string>> {
    const tree: Record<string, string> = {};
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) Object.assign(tree, await treeOf(root, full));
      else tree[path.relative(root, full)] = (await readFile(full)).toString('base64');
    }
    return tree;
  }

  /** Each move is one rename, from a temporary folder beside the versions to `<model>/<version>`. */
  function expectAtomicMoves(repository: string, moves: string[][], targets: string[]) {
    expect(moves.map((operands) => operands.length)).toEqual(targets.map(() => 2));
    expect(moves.map(([, to]) => path.relative(repository, to ?? ''))).toEqual(targets);
    for (const [from, to] of moves) {
      // `.publish-…`/`.seed-…` inside the model's folder (so the rename stays on one file system, and
      // a scan meanwhile ignores it: not a version number), not `..` (somewhere else).
      const temporary = path.relative(path.dirname(to ?? ''), from ?? '').split(path.sep)[0];
      expect(temporary).toMatch(/^\.[^.]/);
    }
  }

  /** A version archive as the admin API takes it: `tar czf v.tgz -C <folder> .` */
  async function archiveOf(version: number): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'wattserve-archive-'));
    scratch.push(dir);
    await run('mkdir', [path.join(dir, 'model')]);
    for (const [file, content] of Object.entries(versionedModel(version))) {
      await writeFile(path.join(dir, 'model', file), content);
    }
    await run('tar', ['czf', path.join(dir, 'v.tgz'), '-C', path.join(dir, 'model'), '.']);
    return path.join(dir, 'v.tgz');
  }

  it.each(jobs.map((manifest) => [manifest.metadata.name, manifest] as const))(
    '%s runs as the Deployment’s user and group, read-only root, and mounts the claim at REPOSITORY',
    (_name, manifest) => {
      const podSecurity = manifest.spec.template.spec.securityContext;
      expect([podSecurity?.runAsUser, podSecurity?.runAsGroup, podSecurity?.fsGroup]).toEqual([
        pod.spec.securityContext?.runAsUser,
        pod.spec.securityContext?.runAsGroup,
        pod.spec.securityContext?.fsGroup,
      ]);
      expect(podSecurity?.seccompProfile?.type).toBe('RuntimeDefault');
      expect(containerOf(manifest).securityContext).toMatchObject({
        runAsNonRoot: true,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      const volume = manifest.spec.template.spec.volumes?.find((v) => v.persistentVolumeClaim !== undefined);
      expect(volume?.persistentVolumeClaim?.claimName).toBe(modelVolume?.persistentVolumeClaim?.claimName);
      const mount = containerOf(manifest).volumeMounts?.find((m) => m.name === volume?.name);
      expect(mount?.mountPath).toBe(envOf(manifest).REPOSITORY);
    },
  );

  it('publish: puts a new version in place in one rename, and a replica polling the volume serves it', async () => {
    const repository = await makeRepository(versionedEntries('m', [1]));
    const app = await startApp({ MODEL_REPOSITORY: repository, MODEL_POLL_INTERVAL_MS: '50' });
    const archive = await archiveOf(2);
    const result = await runJob(publishJob, { REPOSITORY: repository, ARCHIVE_URL: archive, MODEL: 'm', VERSION: '2' });
    expect(result).toMatchObject({ ok: true, stderr: '' });
    expectAtomicMoves(repository, result.moves, ['m/2']);
    // Nothing but version folders: the temporary one is gone.
    expect((await readdir(path.join(repository, 'm'))).sort()).toEqual(['1', '2']);
    const found = (await scanRepository(repository, 'model')).versions.map((v) => [v.location, v.files.sort()]);
    expect(found).toContainEqual(['m/2', ['metadata.json', 'model.onnx']]);
    await vi.waitFor(
      async () => {
        const { body } = await request(app.server)
          .post('/predict/m')
          .send({ instances: [[2, 5]] });
        expect(body).toEqual({ model: 'm', version: 2, predictions: versionedPredictions(2, [[2, 5]]) });
      },
      { timeout: 10_000, interval: 50 },
    );
  });

  it('publish: refuses to replace an existing version, which stays as it was', async () => {
    const repository = await makeRepository(versionedEntries('m', [1]));
    const before = await treeOf(repository);
    const archive = await archiveOf(7);
    const result = await runJob(publishJob, { REPOSITORY: repository, ARCHIVE_URL: archive, MODEL: 'm', VERSION: '1' });
    expect(result).toMatchObject({ ok: false, moves: [] });
    expect(result.stderr).toMatch(/m\/1 exists/);
    expect(await treeOf(repository)).toEqual(before);
  });

  it('publish: leaves nothing behind when the download fails', async () => {
    const repository = await makeRepository(versionedEntries('m', [1]));
    const before = await treeOf(repository);
    const missing = path.join(repository, 'no-such-archive.tgz');
    const result = await runJob(publishJob, { REPOSITORY: repository, ARCHIVE_URL: missing, MODEL: 'm', VERSION: '2' });
    expect(result.ok).toBe(false);
    expect(await readdir(path.join(repository, 'm'))).toEqual(['1']);
    expect(await treeOf(repository)).toEqual(before);
  });

  it('seed: uses the Deployment’s image, whose example models it copies', () => {
    expect(containerOf(seedJob).image).toBe(container.image);
    expect(envOf(seedJob).SOURCE).toBe('/app/models');
  });

  it('seed: fills an empty volume with exactly the shipped models, one rename per version; a rerun changes nothing', async () => {
    const repository = await makeRepository({});
    const first = await runJob(seedJob, { SOURCE: SHIPPED_MODELS, REPOSITORY: repository });
    expect(first).toMatchObject({ ok: true, stderr: '' });
    const versions = (await scanRepository(SHIPPED_MODELS, 'model')).versions.map((v) => v.location);
    expect(versions.length).toBeGreaterThanOrEqual(3);
    expectAtomicMoves(repository, first.moves, versions);
    expect(await treeOf(repository)).toEqual(await treeOf(SHIPPED_MODELS));
    const second = await runJob(seedJob, { SOURCE: SHIPPED_MODELS, REPOSITORY: repository });
    expect(second).toMatchObject({ ok: true, stderr: '', moves: [] });
    expect(await treeOf(repository)).toEqual(await treeOf(SHIPPED_MODELS));
  });

  it('seed: keeps a version the volume already has', async () => {
    const repository = await makeRepository(versionedEntries(LINEAR, [1]));
    const mine = await readFile(path.join(repository, LINEAR, '1', 'metadata.json'), 'utf8');
    const result = await runJob(seedJob, { SOURCE: SHIPPED_MODELS, REPOSITORY: repository });
    expect(result).toMatchObject({ ok: true, stderr: '' });
    expect(await readFile(path.join(repository, LINEAR, '1', 'metadata.json'), 'utf8')).toBe(mine);
    expect(result.moves.map(([, to]) => path.relative(repository, to ?? ''))).not.toContain(`${LINEAR}/1`);
  });
});
