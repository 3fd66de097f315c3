/** The status-bar item: "Serve 3/2 nodes" (nodes in use / lower bound); a click opens the sidebar. */
import { Widget } from '@lumino/widgets';

import { ClusterModel } from './api';

export class NodesStatus extends Widget {
  constructor(onClick: () => void) {
    super();
    this.addClass('servelab-StatusItem');
    this.node.title = 'Ray Serve: worker nodes in use / the fewest that could hold the replicas';
    this.node.addEventListener('click', onClick);
    this.display(null);
  }

  display(model: ClusterModel | null): void {
    this.node.textContent = model ? `Serve ${model.header.nodes_in_use}/${model.header.lower_bound} nodes` : 'Serve: no cluster';
    this.node.dataset.inUse = model ? String(model.header.nodes_in_use) : '';
  }
}
