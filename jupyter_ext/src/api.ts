/**
 * Typed calls to the servelab server extension (`/servelab/api/*` under the server's base URL).
 * Every call goes through Jupyter's ServerConnection, so the token, XSRF and base URL (JupyterHub's
 * `/user/<name>/` too) are handled the way JupyterLab handles its own requests.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface ClusterEntry {
  address: string;
  source: 'configured' | 'RAY_ADDRESS' | 'discovered';
  reachable: boolean;
  attached: boolean;
  record: { pid: number; kernel_id: string | null; embedded: boolean; started_at: number } | null;
}

export interface Segment {
  holder: string;
  amount: number;
  fraction: number;
}

export interface NodeModel {
  id: string;
  label: string;
  type: string;
  head: boolean;
  draining: boolean;
  drained_by: 'servelab' | 'ray' | 'other' | null;
  in_use: boolean;
  cost_per_hour: number;
  total: Record<string, number>;
  available: Record<string, number>;
  replicas: number;
  cached_bytes: number;
  bars: Record<string, Segment[]>;
}

/** A checkpoint the peer weight cache holds (servelab.serving.CacheEntry) and the label of its node. */
export interface CacheEntryModel {
  uri: string;
  nbytes: number;
  reads: number;
  node: string;
  node_label: string;
}

export interface DeploymentModel {
  name: string;
  app: string;
  status: string;
  target_replicas: number;
  running_replicas: number;
  replicas: number;
  message: string;
  healthy: boolean;
  unplaced: number;
  autoscaling: boolean;
}

export interface ClusterModel {
  address: string;
  fingerprint: string;
  header: {
    nodes: number;
    nodes_in_use: number;
    lower_bound: number;
    score: number;
    cost_per_hour: number;
    stranded_gpus: number;
    draining: number;
    gone: number;
    gpus: string; // the logical-GPU note, or NVML's physical figures; empty where neither applies
    pricing: string; // where the $/h figures come from
    autoscaler: string; // what Ray's autoscaler is doing (idle nodes, launches, unmet demand); empty where it reports nothing
  };
  resources: string[];
  holders: string[];
  colours: Record<string, string>; // per deployment ("app/name"), the same as in the notebook's widgets
  nodes: NodeModel[]; // every node; of a large cluster, only the picked type's most stranded (see overview)
  overview: OverviewModel | null; // a large cluster (over 40 nodes) by node type and as cells; null otherwise
  deployments: DeploymentModel[];
  weight_cache: CacheEntryModel[];
  autocompact: AutoModel | null;
  compaction: string | null;
  refresh_interval_s: number;
}

/** One node of a large cluster as a cell (servelab.widgets.overview.NodeCell). */
export interface CellModel {
  state: 'head' | 'in use' | 'idle' | 'draining' | 'freed';
  colour: string; // lighter for emptier, as the widgets draw it
  stranded: boolean;
  title: string; // what hovering says
}

/** The nodes of one type of a large cluster, with their summed bars (servelab.widgets.overview.NodeGroup). */
export interface GroupModel {
  type: string;
  label: string;
  nodes: number;
  in_use: number;
  idle: number;
  draining: number;
  freed: number;
  cost_per_hour: number;
  bars: Record<string, Segment[]>;
  cells: CellModel[]; // most stranded first
}

export interface OverviewModel {
  groups: GroupModel[];
  folded: number; // deployments drawn together as "other deployments"
  group: string | null; // the type whose nodes are in ClusterModel.nodes
  detail_nodes: number; // how many of its nodes, most stranded first
}

export interface AutoModel {
  state: 'waiting' | 'compacting' | 'stopped';
  delay_s: number;
  stable_for_s: number;
  compactions: number;
  nodes_freed: number;
  last_reason: string;
}

/** A compaction's disruption budget (servelab.serving.Budget); what is left out keeps its default. */
export interface Budget {
  max_draining?: number;
  max_migrating?: number | null;
  min_saving_per_move?: number;
}

export interface Move {
  replica: string;
  deployment: string;
  app: string;
  source: string;
  target: string;
}

export interface PlanModel {
  address: string;
  fingerprint: string;
  objective: string;
  nodes_to_free: string[];
  moves: Move[];
  freed_resources: Record<string, number>;
  freed_cost_per_hour: number;
  blocked: Record<string, string>;
  nodes_before: number;
  nodes_after: number;
  lower_bound: number;
  method: string;
  optimal: boolean;
  budget: Budget; // how compact(plan) runs it
  aim: string; // what the plan aimed for and how good it is, in words
  labels: Record<string, string>;
}

export interface CompactionEvent {
  kind: string;
  node: string | null;
  message: string;
  elapsed_s: number;
  nodes_done: number;
  nodes_total: number;
}

export interface LatencyStats {
  requests: number;
  failed: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

export interface CompactionModel {
  id: string;
  address: string;
  state: 'running' | 'done' | 'stopped' | 'failed';
  events: CompactionEvent[];
  error: string | null;
  nodes_to_free: string[];
  report: {
    nodes_freed: string[];
    replicas_moved: number;
    seconds: number;
    stopped: boolean;
    reason: string;
    during: LatencyStats | null;
  } | null;
}

/** An answer other than success: the server's `status` kind and its message naming the fix. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly kind: string,
    message: string
  ) {
    super(message);
  }
}

const settings = ServerConnection.makeSettings();

function url(path: string, query: Record<string, string | null> = {}): string {
  const params = Object.entries(query)
    .filter(([, value]) => value)
    .map(([key, value]) => `${key}=${encodeURIComponent(value as string)}`)
    .join('&');
  const base = URLExt.join(settings.baseUrl, 'servelab', 'api', path);
  return params ? `${base}?${params}` : base;
}

async function request<T>(path: string, init: RequestInit = {}, query: Record<string, string | null> = {}): Promise<T> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url(path, query), init, settings);
  } catch (error) {
    throw new ApiError(0, 'network', `the Jupyter server did not answer: ${error}`);
  }
  const text = await response.text();
  let data: any = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(response.status, 'bad-answer', `the server answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    throw new ApiError(response.status, data.status ?? 'error', data.message ?? response.statusText);
  }
  return data as T;
}

function post<T>(path: string, body: object): Promise<T> {
  return request<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

export const api = {
  clusters: () => request<{ clusters: ClusterEntry[]; refresh_interval_s: number }>('clusters'),
  cluster: (address: string | null, group: string | null = null) => request<ClusterModel>('cluster', {}, { address, group }),
  plan: (address: string | null, objective: string) => post<PlanModel>('plans', { address, objective }),
  compact: (plan: string, budget: Budget = {}) => post<CompactionModel>('compactions', { plan, budget }),
  compaction: (id: string) => request<CompactionModel>(`compactions/${id}`),
  scale: (address: string | null, name: string, app: string, replicas: number) =>
    post<object>(`deployments/${encodeURIComponent(name)}/scale`, { address, app, replicas })
};

/**
 * Follow a compaction's server-sent events until it ends; falls back to polling where a proxy
 * buffers the stream. Resolves with the final state.
 */
export async function follow(id: string, onEvent: (event: CompactionEvent) => void): Promise<CompactionModel> {
  let seen = 0;
  try {
    const response = await ServerConnection.makeRequest(url(`compactions/${id}/events`), {}, settings);
    if (response.ok && response.body) {
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        buffer += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const kind = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!data) {
            continue;
          }
          if (kind === 'end') {
            return JSON.parse(data) as CompactionModel;
          }
          seen += 1;
          onEvent(JSON.parse(data) as CompactionEvent);
        }
      }
    }
  } catch {
    // fall through to polling
  }
  for (;;) {
    const state = await api.compaction(id);
    state.events.slice(seen).forEach(onEvent);
    seen = state.events.length;
    if (state.state !== 'running') {
      return state;
    }
    await new Promise(resolve => setTimeout(resolve, 1000));
  }
}
