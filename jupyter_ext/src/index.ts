/**
 * servelab's JupyterLab plugin: the sidebar, its status-bar item and palette commands.
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, ISessionContext } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { ServelabSidebar } from './sidebar';
import { NodesStatus } from './statusbar';
import iconSvg from '../style/icon.svg';

const CATEGORY = 'Ray Serve (servelab)';
export const icon = new LabIcon({ name: 'servelab:icon', svgstr: iconSvg });

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'servelab:sidebar',
  description: 'Ray Serve clusters in the sidebar: nodes, deployments, fragmentation and compaction.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette, ILayoutRestorer, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null
  ) => {
    const sidebar = new ServelabSidebar();
    sidebar.title.icon = icon;
    shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, sidebar.id);

    // The notebook or console in focus: the sidebar shows its kernel's cluster, where it has one.
    const followFocus = (): void => {
      const context = (shell.currentWidget as { sessionContext?: ISessionContext } | null)?.sessionContext;
      sidebar.followKernel(context?.session?.kernel?.id ?? null);
      context?.kernelChanged.connect(followFocus); // a restarted or changed kernel is another one
    };
    shell.currentChanged.connect(followFocus);

    const commands = {
      open: 'servelab:open',
      refresh: 'servelab:refresh',
      plan: 'servelab:plan',
      compact: 'servelab:compact'
    };
    app.commands.addCommand(commands.open, {
      label: 'Show Ray Serve Cluster',
      execute: () => shell.activateById(sidebar.id)
    });
    app.commands.addCommand(commands.refresh, { label: 'Refresh Ray Serve Cluster', execute: () => sidebar.refresh() });
    app.commands.addCommand(commands.plan, {
      label: 'Plan Replica Compaction',
      execute: () => {
        shell.activateById(sidebar.id);
        return sidebar.plan();
      }
    });
    app.commands.addCommand(commands.compact, {
      label: 'Compact Replicas (zero downtime)',
      execute: () => {
        shell.activateById(sidebar.id);
        return sidebar.compact();
      }
    });
    Object.values(commands).forEach(command => palette?.addItem({ command, category: CATEGORY }));

    if (statusBar) {
      const item = new NodesStatus(() => void app.commands.execute(commands.open));
      statusBar.registerStatusItem('servelab:nodes', { item, align: 'left', rank: 4 });
      sidebar.modelChanged.connect((_, model) => item.display(model));
      void sidebar.refresh();
    }
  }
};

export default plugin;
