/**
 * Which cluster the sidebar shows: the one the user picked; else the cluster of the notebook (or
 * console) in focus, whose kernel started or attached to it; else the one it showed last, while
 * that still answers; else none, and the server names its default. A cluster another process
 * starts later never takes the sidebar over (dask-labextension binds a notebook the same way).
 */
import { ClusterEntry } from './schema';

export interface Choice {
  picked: string | null; // chosen in the picker
  kernelId: string | null; // the kernel of the notebook or console in focus
  shown: string | null; // the cluster the sidebar showed last
}

export function chooseCluster(clusters: ClusterEntry[], choice: Choice): string | null {
  if (choice.picked) {
    return choice.picked; // even when it stops answering: the panel says so, it does not switch
  }
  const reachable = clusters.filter(c => c.reachable);
  const focused = choice.kernelId ? reachable.find(c => c.record?.kernel_id === choice.kernelId) : undefined;
  if (focused) {
    return focused.address;
  }
  return reachable.some(c => c.address === choice.shown) ? choice.shown : null;
}
