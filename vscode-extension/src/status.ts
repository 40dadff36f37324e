/**
 * The status bar item: model state (starting / loading / ready / remote / error), the last completion's latency,
 * and the on/off switch. Clicking it toggles completions; the tooltip links to restart and the log. Its DOM id in
 * the workbench is `diffill.diffill.status` (extension id + item id), which the end-to-end test looks for.
 */

import * as vscode from 'vscode';

import { type Latency, type ModelState, present } from './state';

export class StatusItem implements vscode.Disposable {
    private readonly item = vscode.window.createStatusBarItem('status', vscode.StatusBarAlignment.Right, 100);
    private state: ModelState = { kind: 'stopped' };
    private latency: Latency | undefined;
    private enabled = true;

    constructor() {
        this.item.name = 'Diffill';
        this.item.command = 'diffill.toggle';
        this.render();
        this.item.show();
    }

    setState(state: ModelState): void {
        if (state.kind !== 'ready') {
            this.latency = undefined; // a latency belongs to the engine that produced it
        }
        this.state = state;
        this.render();
    }

    setLatency(latency: Latency): void {
        this.latency = latency;
        this.render();
    }

    setEnabled(enabled: boolean): void {
        this.enabled = enabled;
        this.render();
    }

    dispose(): void {
        this.item.dispose();
    }

    private render(): void {
        const { text, tooltip, error } = present(this.state, this.enabled, this.latency);
        this.item.text = text;
        const links = '[Restart server](command:diffill.restart) · [Show log](command:diffill.showLog)';
        const markdown = new vscode.MarkdownString(`${tooltip.split('\n').join('\n\n')}\n\n${links}`, true);
        markdown.isTrusted = { enabledCommands: ['diffill.restart', 'diffill.showLog'] };
        this.item.tooltip = markdown;
        this.item.backgroundColor = error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
        this.item.accessibilityInformation = { label: tooltip };
    }
}
