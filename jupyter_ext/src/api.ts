/**
 * Typed calls to the servelab server extension (`/servelab/api/*` under the server's base URL).
 * Every call goes through Jupyter's ServerConnection, so the token, XSRF and base URL (JupyterHub's
 * `/user/<name>/` too) are handled the way JupyterLab handles its own requests.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

// The answers' types are declared once, in Python (jupyter_ext/schema.py), and generated into schema.ts.
import type { Budget, ClusterListing, ClusterModel, CompactionEvent, CompactionModel, PlanModel } from './schema';
export * from './schema';

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
  clusters: () => request<ClusterListing>('clusters'),
  cluster: (address: string | null, group: string | null = null) => request<ClusterModel>('cluster', {}, { address, group }),
  plan: (address: string | null, objective: string) => post<PlanModel>('plans', { address, objective }),
  compact: (plan: string, budget: Budget = {}, releaseUnownedNodes = false) =>
    post<CompactionModel>('compactions', { plan, budget, release_unowned_nodes: releaseUnownedNodes }),
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
