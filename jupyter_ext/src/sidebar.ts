/**
 * The servelab sidebar: a cluster picker, nodes as bars of GPU, CPU and memory coloured by
 * deployment (stranded capacity and draining nodes marked), the fragmentation figures, the
 * deployments with their replica counts and states (scaled by hand with - and +), the peer weight
 * cache, and compaction: plan, run, follow, report.
 * It draws the server's one JSON model of the cluster and refreshes it on an interval.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Signal, ISignal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { api, API_VERSION, ApiError, AutoModel, CacheEntryModel, ClusterEntry, ClusterModel, CompactionEvent, CompactionModel, DeploymentModel, follow, NodeModel, PlanModel, Segment } from './api';
import { chooseCluster } from './choose';
import { bytes, fill, h, money, num } from './dom';

const UNITS: Record<string, string> = { GPU: 'GPU', CPU: 'CPU', memory: 'GiB' };
const HIDDEN_EVERY = 3;
const FIXED: Record<string, string> = { other: 'used by Ray/Serve', stranded: 'stranded', free: 'free' };
const SEARCH_ABOVE = 12; // deployments listed before a search box helps
const LISTED = 10; // a plan's moves and stays listed before "and N more" (as the notebook's summary)

export class ServelabSidebar extends Widget {
  constructor() {
    super();
    this.id = 'servelab-sidebar';
    this.addClass('servelab-Sidebar');
    this.title.caption = 'Ray Serve clusters (servelab)';
    this.node.append(this._head, this._status, this._body, this._compaction);
    this._picker.addEventListener('change', () => {
      this._address = this._picker.value || null;
      this._plan = null;
      this._group = null;
      void this.refresh();
    });
  }

  /** Emitted after each refresh with the model (null when no cluster answers). */
  get modelChanged(): ISignal<this, ClusterModel | null> {
    return this._modelChanged;
  }

  get model(): ClusterModel | null {
    return this._model;
  }

  /** Read the cluster list and the chosen cluster again, and redraw. */
  async refresh(): Promise<void> {
    try {
      const { clusters, refresh_interval_s, api_version } = await api.clusters();
      if (api_version !== API_VERSION) {
        // Figures read with another version's types would be wrong without a word: say so instead.
        throw new ApiError(
          0,
          'version',
          `This page's servelab sidebar speaks API version ${API_VERSION}, the server's servelab ${api_version}: reload the page.`
        );
      }
      this._interval = refresh_interval_s * 1000;
      const address = chooseCluster(clusters, { picked: this._address, kernelId: this._kernelId, shown: this._shown });
      this._drawPicker(clusters, address);
      // With no cluster listed, the server's answer says what to do (its 404 'no-cluster').
      this._model = await api.cluster(clusters.length ? address : null, this._group);
      this._shown = this._model.address;
      this._error = null;
      this._forgetWhatChanged(this._model);
    } catch (error) {
      this._model = null;
      this._error = error instanceof ApiError ? error : new ApiError(0, 'error', String(error));
    }
    this._draw();
    this._modelChanged.emit(this._model);
  }

  /** Show the cluster of the kernel in focus (a notebook's or console's; null: none), where it has one. */
  followKernel(kernelId: string | null): void {
    if (kernelId !== this._kernelId) {
      this._kernelId = kernelId;
      void this.refresh();
    }
  }

  /** A plan, or a finished compaction's report, says nothing true once its cluster changed: drop it.
   * A plan of another cluster than the one shown is kept (and not drawn) until that one is shown again. */
  private _forgetWhatChanged(model: ClusterModel): void {
    const fingerprint = model.fingerprint;
    if (this._isRunning) {
      return;
    }
    if (this._plan && this._plan.address === model.address && this._plan.fingerprint !== fingerprint) {
      this._plan = null;
      this._planNote = 'The cluster changed since that plan: plan again.';
    }
    if (this._running && this._reportedAt !== null && this._reportedAt !== fingerprint) {
      this._running = null;
      this._events = [];
    }
    this._reportedAt = this._running ? fingerprint : null;
  }

  /** Plan a compaction of the shown cluster with the chosen objective, and show the plan. */
  async plan(): Promise<void> {
    this._planError = null;
    this._planNote = null;
    try {
      this._plan = await api.plan(this._model?.address ?? this._address, this._objective.value);
    } catch (error) {
      this._plan = null;
      this._planError = String((error as Error).message);
    }
    this._drawCompaction();
  }

  /** Set a deployment's replicas (what `%scale` does), then redraw; an error shows under the table. */
  async scale(deployment: DeploymentModel, replicas: number): Promise<void> {
    const key = `${deployment.app}/${deployment.name}`;
    this._scaleError = null;
    this._scaling.add(key);
    this._draw();
    try {
      await api.scale(this._model?.address ?? this._address, deployment.name, deployment.app, replicas);
    } catch (error) {
      this._scaleError = `${deployment.name}: ${(error as Error).message}`;
    }
    this._scaling.delete(key);
    await this.refresh();
  }

  /** Run the shown plan and follow its events until it ends. */
  async compact(): Promise<void> {
    if (!this._plan || this._plan.address !== this._model?.address) {
      await this.plan(); // a kept plan of another cluster is not the shown one's
    }
    if (!this._plan || !this._plan.nodes_to_free.length) {
      return;
    }
    const release = this._plan.unowned_warning !== '';
    if (release) {
      // No autoscaler takes the freed nodes away: the user says yes to that first, as to %compact --release-unowned.
      const answer = await showDialog({
        title: 'Free nodes that no autoscaler owns?',
        body: `${this._plan.unowned_warning[0].toUpperCase()}${this._plan.unowned_warning.slice(1)}`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Compact anyway' })]
      });
      if (!answer.button.accept) {
        return;
      }
    }
    try {
      const started = await api.compact(this._plan.fingerprint, { max_draining: Number(this._draining.value) }, release);
      this._events = [];
      this._running = started;
      this._drawCompaction();
      this._running = await follow(started.id, event => {
        this._events.push(event);
        this._drawCompaction();
      });
    } catch (error) {
      this._planError = String((error as Error).message);
    }
    this._plan = null;
    this._reportedAt = null; // the report stays until the cluster changes after the refresh below
    this._drawCompaction();
    await this.refresh();
  }

  protected onAfterAttach(): void {
    void this.refresh();
    this._schedule();
  }

  protected onBeforeDetach(): void {
    window.clearTimeout(this._timer);
  }

  /** Refresh on the server's interval while shown, and every HIDDEN_EVERY intervals while hidden:
   * the status-bar item follows the cluster either way (it said "no cluster" while a notebook ran one). */
  private _schedule(): void {
    this._timer = window.setTimeout(async () => {
      this._ticks += 1;
      if (this.isVisible || this._ticks % HIDDEN_EVERY === 0) {
        await this.refresh();
      }
      this._schedule();
    }, this._interval);
  }

  private _drawPicker(clusters: ClusterEntry[], address: string | null): void {
    const chosen = address ?? this._model?.address ?? '';
    fill(
      this._picker,
      ...clusters.map(c =>
        h('option', { value: c.address, selected: c.address === chosen }, `${c.address} (${c.reachable ? c.source : 'not answering'})`)
      )
    );
    this._picker.hidden = clusters.length === 0; // an empty list says nothing the empty state does not
  }

  private _draw(): void {
    const model = this._model;
    if (!model) {
      const error = this._error;
      const empty = error?.kind === 'no-cluster'; // nothing is wrong: there is just no cluster yet
      fill(
        this._status,
        h('div', { class: `servelab-Message ${empty ? 'servelab-mod-empty' : 'servelab-mod-error'}`, 'data-status': error?.kind ?? 'error' }, error?.message ?? 'No cluster.')
      );
      fill(this._body);
      this._compaction.hidden = true;
      return;
    }
    const head = model.header;
    fill(
        this._status,
      h(
        'div',
        { class: 'servelab-Figures' },
        figure('in use', `${head.nodes_in_use}`, 'servelab-nodes-in-use', 'worker nodes hosting replicas'),
        figure('lower bound', `${head.lower_bound}`, 'servelab-lower-bound', 'the fewest worker nodes that could hold every replica'),
        figure('fragment.', num(head.score), 'servelab-score', 'fragmentation: (in use - lower bound) / in use; 0 is packed'),
        figure('$ / hour', compact(head.cost_per_hour, v => v.toFixed(2)), 'servelab-cost', `what the cluster's nodes cost per hour (${head.pricing})`)
      ),
      head.draining ? h('div', { class: 'servelab-Message servelab-Draining' }, drainingLine(model.nodes)) : null,
      head.gpus ? h('div', { class: 'servelab-Message servelab-Gpus', title: 'what the GPUs really are, beside Ray\'s reservations' }, head.gpus) : null,
      head.autoscaler
        ? h('div', { class: 'servelab-Message servelab-Autoscaler', title: 'what Ray\'s autoscaler is doing' }, head.autoscaler)
        : null,
      model.autocompact ? drawAuto(model.autocompact) : null
    );
    const palette = new Map(Object.entries(model.colours));
    fill(
      this._body,
      ...this._nodesPart(model, palette),
      h('h3', {}, this._deploymentsTitle(model)),
      model.deployments.length > SEARCH_ABOVE ? this._search : null,
      this._drawDeployments(model.deployments, palette, model.compaction !== null),
      this._scaleError ? h('div', { class: 'servelab-Message servelab-mod-error servelab-ScaleError' }, this._scaleError) : null,
      model.weight_cache.length ? h('h3', {}, 'Weight cache') : null,
      model.weight_cache.length ? drawCache(model.weight_cache) : null
    );
    this._compaction.hidden = false;
    this._drawCompaction();
  }

  /** The nodes: a card each, or for a large cluster a row of bars per node type, a cell per node,
   * and the cards of the picked type's most stranded nodes (a click on a type picks it). */
  private _nodesPart(model: ClusterModel, palette: Map<string, string>): (HTMLElement | null)[] {
    const view = model.overview;
    if (!view) {
      return [
        h('h3', {}, 'Nodes'),
        legend(model.holders, palette),
        h('div', { class: 'servelab-Nodes' }, ...model.nodes.map(node => drawNode(node, model.resources, palette)))
      ];
    }
    const groups = view.groups.map(group => {
      const picked = view.group === group.type;
      const counts = `${group.in_use} in use · ${group.idle} idle${group.draining ? ` · ${group.draining} draining` : ''}${group.freed ? ` · ${group.freed} freed` : ''}`;
      const element = h(
        'div',
        {
          class: `servelab-Group${picked ? ' servelab-mod-picked' : ''}`,
          'data-group': group.type,
          title: group.type === 'head' ? '' : picked ? 'click to hide its nodes' : `click for the ${view.detail_nodes} most stranded ${group.type} nodes`
        },
        h('div', { class: 'servelab-NodeHead' }, h('span', { class: 'servelab-NodeLabel' }, group.label), h('span', { class: 'servelab-GroupCounts' }, counts), h('span', { class: 'servelab-NodeCost' }, money(group.cost_per_hour))),
        ...drawBars(group.bars, model.resources, palette),
        h(
          'div',
          { class: 'servelab-Cells' },
          ...group.cells.map(c => h('span', { class: `servelab-Cell${c.stranded ? ' servelab-mod-stranded' : ''}`, 'data-state': c.state, style: `background:${c.colour}`, title: c.title }))
        )
      );
      if (group.type !== 'head') {
        element.addEventListener('click', () => {
          this._group = picked ? null : group.type;
          void this.refresh();
        });
      }
      return element;
    });
    return [
      h('h3', {}, `Nodes: ${model.header.nodes} in ${view.groups.length} type(s)`),
      legend(model.holders, palette),
      h('div', { class: 'servelab-Note', title: model.header.stranded_note }, 'A cell per node, darker for fuller; a red dot: capacity stranded.'),
      h('div', { class: 'servelab-Groups' }, ...groups),
      view.group && model.nodes.length ? h('h3', {}, `The ${model.nodes.length} most stranded ${view.group} nodes`) : null,
      view.group ? h('div', { class: 'servelab-Nodes' }, ...model.nodes.map(node => drawNode(node, model.resources, palette))) : null
    ];
  }

  /** "Deployments", with how many are drawn together as "other deployments" in a large view. */
  private _deploymentsTitle(model: ClusterModel): string {
    const folded = model.overview?.folded ?? 0;
    return folded ? `Deployments (${model.deployments.length}; ${folded} drawn as "other deployments")` : 'Deployments';
  }

  private _drawDeployments(all: DeploymentModel[], palette: Map<string, string>, compacting: boolean): HTMLElement {
    if (!all.length) {
      return h('div', { class: 'servelab-Message' }, 'No deployments yet: %%deploy one from a notebook.');
    }
    const wanted = all.length > SEARCH_ABOVE ? this._search.value.trim().toLowerCase() : '';
    const deployments = wanted ? all.filter(d => `${d.app}/${d.name}`.toLowerCase().includes(wanted)) : all;
    const rows = deployments.map(d => {
      const key = `${d.app}/${d.name}`;
      const why = d.autoscaling
        ? 'it autoscales: change its autoscaling bounds instead'
        : compacting
          ? 'wait until the compaction ends'
          : this._scaling.has(key)
            ? 'scaling'
            : '';
      const step = (by: number, label: string, cls: string) =>
        button(label, `servelab-mod-small ${cls}`, () => void this.scale(d, d.target_replicas + by), Boolean(why) || d.target_replicas + by < 0, why || `${by > 0 ? 'one replica more' : 'one replica fewer'} (${d.target_replicas + by})`);
      const replicas = h(
        'span',
        { class: 'servelab-Replicas' },
        step(-1, '−', 'servelab-scale-down'),
        h('span', { class: 'servelab-ReplicaCount', title: 'running / target replicas' }, `${d.running_replicas}/${d.target_replicas}`),
        step(1, '+', 'servelab-scale-up')
      );
      return h(
        'tr',
        { class: 'servelab-Deployment', 'data-deployment': key },
        h(
          'td',
          {},
          h(
            'span',
            { class: 'servelab-DeploymentName', title: d.message },
            h('span', { class: 'servelab-Swatch', style: `background:${palette.get(key) ?? '#888'}` }),
            h('span', { title: key }, d.name)
          ),
          d.app === d.name ? null : h('div', { class: 'servelab-Note' }, `in ${d.app}`)
        ),
        h('td', {}, h('span', { class: `servelab-State servelab-state-${d.status.toLowerCase()}` }, d.status)),
        // Three columns fit the sidebar's width; what is pending goes under the count, not beside it.
        h(
          'td',
          {},
          replicas,
          d.unplaced
            ? h('div', { class: 'servelab-Pending', title: `${d.unplaced} replica(s) waiting for a node${d.message ? ': ' + d.message : ''}` }, `+${d.unplaced} pending`)
            : null
        )
      );
    });
    return h(
      'table',
      { class: 'servelab-Deployments' },
      h('thead', {}, h('tr', {}, h('th', {}, 'deployment'), h('th', {}, 'status'), h('th', {}, 'replicas'))),
      h('tbody', {}, ...rows)
    );
  }

  private _drawCompaction(): void {
    const buttons = h(
      'div',
      { class: 'servelab-Actions' },
      this._objective,
      this._draining,
      button('Plan compaction', 'servelab-plan', () => void this.plan(), this._isRunning),
      this._plan && this._plan.address === this._model?.address && this._plan.nodes_to_free.length
        ? button(`Compact: free ${this._plan.nodes_to_free.length} node(s)`, 'servelab-compact jp-mod-accept', () => void this.compact(), this._isRunning)
        : null
    );
    const parts: (HTMLElement | null)[] = [h('h3', {}, 'Compaction'), buttons];
    if (this._planError) {
      parts.push(h('div', { class: 'servelab-Message servelab-mod-error' }, this._planError));
    }
    if (this._planNote) {
      parts.push(h('div', { class: 'servelab-Message servelab-PlanNote' }, this._planNote));
    }
    if (this._plan && this._plan.address === this._model?.address) {
      parts.push(drawPlan(this._plan));
    }
    if (this._running) {
      parts.push(drawProgress(this._running, this._events));
    }
    fill(this._compaction, ...parts);
  }

  private get _isRunning(): boolean {
    return this._running?.state === 'running';
  }

  private _picker = h('select', { class: 'servelab-Picker', title: 'cluster' }) as HTMLSelectElement;
  private _objective = h(
    'select',
    { class: 'servelab-Objective', title: 'what compaction optimises' },
    h('option', { value: 'nodes' }, 'free nodes'),
    h('option', { value: 'cost' }, 'save cost')
  ) as HTMLSelectElement;
  private _draining = h(
    'select',
    { class: 'servelab-MaxDraining', title: 'nodes that may drain at once: more is faster, one at a time disturbs requests least' },
    h('option', { value: '1' }, '1 node at a time'),
    h('option', { value: '2' }, '2 nodes at once'),
    h('option', { value: '3' }, '3 nodes at once')
  ) as HTMLSelectElement;
  private _head = h(
    'div',
    { class: 'servelab-Head' },
    h('span', { class: 'servelab-Title' }, 'Ray Serve'),
    this._picker,
    button('↻', 'servelab-refresh', () => void this.refresh())
  );
  private _search = searchBox(() => this._draw());
  private _group: string | null = null; // the node type of a large cluster whose nodes are shown
  private _status = h('div', { class: 'servelab-Status' });
  private _body = h('div', { class: 'servelab-Body' });
  private _compaction = h('div', { class: 'servelab-Compaction' });
  private _address: string | null = null; // picked by the user
  private _kernelId: string | null = null; // of the notebook or console in focus
  private _shown: string | null = null; // the cluster shown last, kept while it answers
  private _model: ClusterModel | null = null;
  private _error: ApiError | null = null;
  private _plan: PlanModel | null = null;
  private _planError: string | null = null;
  private _planNote: string | null = null;
  private _reportedAt: string | null = null; // the cluster's fingerprint when the shown report was first drawn
  private _scaleError: string | null = null;
  private _scaling = new Set<string>();
  private _running: CompactionModel | null = null;
  private _events: CompactionEvent[] = [];
  private _interval = 2000;
  private _timer = 0;
  private _ticks = 0;
  private _modelChanged = new Signal<this, ClusterModel | null>(this);
}

function figure(name: string, value: string, cls: string, title: string): HTMLElement {
  return h('div', { class: `servelab-Figure ${cls}`, title }, h('div', { class: 'servelab-FigureValue' }, value), h('div', { class: 'servelab-FigureName' }, name));
}

function button(label: string, cls: string, onClick: () => void, disabled = false, title?: string): HTMLElement {
  const element = h('button', { class: `jp-Button servelab-Button ${cls}`, disabled, title }, label);
  element.addEventListener('click', onClick);
  return element;
}

function legend(holders: string[], palette: Map<string, string>): HTMLElement {
  const entries = holders.map(name =>
    h('span', { class: 'servelab-LegendItem' }, h('span', { class: 'servelab-Swatch', style: `background:${palette.get(name) ?? '#888'}` }), name)
  );
  const fixed = Object.entries(FIXED).map(([holder, name]) =>
    h('span', { class: 'servelab-LegendItem' }, h('span', { class: `servelab-Swatch servelab-holder-${holder}` }), name)
  );
  return h('div', { class: 'servelab-Legend' }, ...entries, ...fixed);
}

const DRAINERS: Record<string, string> = {
  servelab: 'servelab\'s compaction',
  ray: 'Ray Serve\'s own node compaction',
  other: 'someone else (an operator or an autoscaler)'
};

/** Who drains which nodes: a drain servelab did not start makes its compaction wait. */
function drainingLine(nodes: NodeModel[]): string {
  const draining = nodes.filter(n => n.draining);
  const foreign = draining.filter(n => n.drained_by !== 'servelab');
  const by = [...new Set(foreign.map(n => DRAINERS[n.drained_by ?? 'other']))];
  return foreign.length
    ? `${draining.length} node(s) draining, ${foreign.length} by ${by.join(' and ')}: compaction waits until that ends`
    : `${draining.length} node(s) draining`;
}

/** The automatic compactor's line: what it waits for and what it has done. */
function drawAuto(auto: AutoModel): HTMLElement {
  const doing =
    auto.state === 'waiting'
      ? `waiting, cluster stable ${seconds(auto.stable_for_s)} of ${seconds(auto.delay_s)}`
      : auto.state;
  const done = `${auto.compactions} compaction(s), ${auto.nodes_freed} node(s) freed`;
  return h(
    'div',
    { class: 'servelab-Message servelab-Auto', 'data-state': auto.state, title: auto.last_reason ? `last: ${auto.last_reason}` : '' },
    h('b', {}, 'Auto-compaction: '),
    `${doing} · ${done}`,
    auto.last_reason ? h('div', { class: 'servelab-AutoReason' }, auto.last_reason) : null
  );
}

function seconds(value: number): string {
  return value >= 120 ? `${Math.round(value / 60)} min` : `${Math.round(value)} s`;
}

/** A bar per resource, split by holder; the total at the right (a node's, or a node type's summed). */
function drawBars(bars: Record<string, Segment[]>, resources: string[], palette: Map<string, string>): HTMLElement[] {
  return resources.map(resource => {
    const segments = bars[resource];
    if (!segments) {
      return h('div', { class: 'servelab-BarRow' }, h('span', { class: 'servelab-BarName' }, resource), h('span', { class: 'servelab-BarNone' }, '-'));
    }
    const inUnits = (amount: number) => (resource === 'memory' ? amount / 2 ** 30 : amount);
    const total = segments.reduce((sum, s) => sum + s.amount, 0);
    return h(
      'div',
      { class: 'servelab-BarRow', 'data-resource': resource },
      h('span', { class: 'servelab-BarName' }, resource),
      h(
        'div',
        { class: 'servelab-Bar' },
        ...segments.map(s => {
          const known = s.holder in FIXED;
          return h('div', {
            class: `servelab-Segment ${known ? `servelab-holder-${s.holder}` : 'servelab-holder-deployment'}`,
            'data-holder': s.holder,
            style: `width:${(s.fraction * 100).toFixed(2)}%;${known ? '' : `background:${palette.get(s.holder) ?? '#888'}`}`,
            title: `${FIXED[s.holder] ?? s.holder}: ${num(inUnits(s.amount))} ${UNITS[resource] ?? resource}`
          });
        })
      ),
      h('span', { class: 'servelab-BarTotal' }, compact(inUnits(total)))
    );
  });
}

function drawNode(node: NodeModel, resources: string[], palette: Map<string, string>): HTMLElement {
  const badges = [
    node.head ? h('span', { class: 'servelab-Badge' }, 'head') : null,
    node.draining
      ? h(
          'span',
          { class: 'servelab-Badge servelab-mod-draining', title: `drained by ${DRAINERS[node.drained_by ?? 'other']}` },
          node.drained_by === 'servelab' ? 'draining' : `draining (${node.drained_by === 'ray' ? 'Ray' : 'other'})`
        )
      : null,
    !node.head && !node.in_use ? h('span', { class: 'servelab-Badge servelab-mod-idle' }, 'idle') : null,
    node.cached_bytes
      ? h(
          'span',
          { class: 'servelab-Badge servelab-mod-cached', title: 'checkpoints the peer weight cache holds in this node\'s object store' },
          `${bytes(node.cached_bytes)} cached`
        )
      : null
  ];
  const bars = drawBars(node.bars, resources, palette);
  return h(
    'div',
    { class: `servelab-Node${node.draining ? ' servelab-mod-draining' : ''}`, 'data-node': node.id },
    h('div', { class: 'servelab-NodeHead' }, h('span', { class: 'servelab-NodeLabel', title: node.id }, node.label.replace(/ \((head|draining)\)/g, '')), ...badges, h('span', { class: 'servelab-NodeCost' }, money(node.cost_per_hour))),
    ...bars
  );
}

/** The peer weight cache: each checkpoint, its size, the node holding it and how often replicas read it there. */
function drawCache(entries: CacheEntryModel[]): HTMLElement {
  return h(
    'ul',
    { class: 'servelab-Cache' },
    ...entries.map(e =>
      h(
        'li',
        { class: 'servelab-CacheEntry' },
        h('div', { class: 'servelab-CacheName', title: e.uri }, e.uri.split('/').pop() || e.uri),
        h(
          'div',
          { class: 'servelab-CacheWhere', title: 'read: replicas that loaded it from the cache' },
          `${bytes(e.nbytes)} on ${e.node_label} · read ${e.reads}×`
        )
      )
    )
  );
}

/** Why nodes stay: the first LISTED, then how many more. */
function stays(plan: PlanModel, label: (id: string) => string): HTMLElement[] {
  const all = Object.entries(plan.blocked);
  const shown = all.slice(0, LISTED).map(([id, why]) => {
    const rule = plan.kept_by[id];
    return h(
      'div',
      { class: 'servelab-Why', 'data-rule': rule },
      rule && h('span', { class: 'servelab-Rule', title: 'the rule that keeps this node in use' }, rule),
      `${label(id)} stays: ${why}`
    );
  });
  return all.length > LISTED ? [...shown, h('div', { class: 'servelab-Why servelab-More' }, `and ${all.length - LISTED} more node(s) that stay`)] : shown;
}

/** A search box over the deployments; it lives across redraws so it keeps its focus and text. */
function searchBox(onInput: () => void): HTMLInputElement {
  const box = h('input', { class: 'servelab-Search jp-mod-styled', type: 'search', placeholder: 'filter deployments' }) as HTMLInputElement;
  box.addEventListener('input', onInput);
  return box;
}

/** `13600` as "13.6k": a large cluster's figures fit their boxes; smaller ones as ``below`` writes them. */
function compact(value: number, below: (value: number) => string = num): string {
  return value >= 1000 ? `${num(value / 1000, 1)}k` : below(value);
}

function drawPlan(plan: PlanModel): HTMLElement {
  const label = (id: string) => plan.labels[id] ?? id.slice(0, 8);
  if (!plan.nodes_to_free.length) {
    return h(
      'div',
      { class: 'servelab-Plan' },
      h('div', { class: 'servelab-Message' }, `Nothing to free: ${plan.nodes_before} node(s) in use, lower bound ${plan.lower_bound}.`),
      ...stays(plan, label)
    );
  }
  const freed = Object.entries(plan.freed_resources)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${num(k === 'memory' ? v / 2 ** 30 : v)} ${UNITS[k] ?? k}`)
    .join(', ');
  return h(
    'div',
    { class: 'servelab-Plan' },
    h(
      'div',
      { class: 'servelab-PlanSummary' },
      `Free ${plan.nodes_to_free.length} node(s): ${plan.nodes_before} → ${plan.nodes_after} in use (lower bound ${plan.lower_bound}), saving ${money(plan.freed_cost_per_hour)} (${freed}). ${plan.moves.length} replica move(s); ${plan.aim}.`
    ),
    plan.unowned_warning
      ? h('div', { class: 'servelab-Message servelab-mod-warn servelab-Unowned' }, `Before you compact: ${plan.unowned_warning}`)
      : null,
    h(
      'ul',
      { class: 'servelab-Moves' },
      ...plan.moves.slice(0, LISTED).map(m => h('li', {}, `${m.deployment}: ${label(m.source)} → ${label(m.target)}`)),
      plan.moves.length > LISTED ? h('li', { class: 'servelab-More' }, `and ${plan.moves.length - LISTED} more move(s)`) : null
    ),
    ...stays(plan, label)
  );
}

function drawProgress(compaction: CompactionModel, events: CompactionEvent[]): HTMLElement {
  const last = events[events.length - 1];
  const total = last?.nodes_total || compaction.nodes_to_free.length || 1;
  const done = last?.nodes_done ?? 0;
  const report = compaction.report;
  return h(
    'div',
    { class: 'servelab-Progress', 'data-state': compaction.state },
    h('div', { class: 'servelab-ProgressBar' }, h('div', { class: 'servelab-ProgressDone', style: `width:${(100 * done) / total}%` })),
    h('ol', { class: 'servelab-Events' }, ...events.map(e => h('li', { 'data-kind': e.kind }, `${num(e.elapsed_s, 1)} s  ${e.message}`))),
    compaction.error ? h('div', { class: 'servelab-Message servelab-mod-error' }, compaction.error) : null,
    report
      ? h(
          'div',
          { class: `servelab-Report${report.stopped ? ' servelab-mod-error' : ''}` },
          `${report.stopped ? 'Stopped: ' + report.reason + ' ' : ''}Freed ${report.nodes_freed.length} node(s), moved ${report.replicas_moved} replica(s) in ${num(report.seconds, 1)} s.`
        )
      : null
  );
}
