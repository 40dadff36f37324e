/**
 * Diffill for VS Code: ghost-text completions from the Diffill language server.
 *
 * Wires the pieces: a log output channel, the status bar item, the server session (language client) and the
 * commands (toggle, restart, show log). Every disposable goes into `context.subscriptions`.
 */

import * as vscode from 'vscode';

import { ServerSession } from './server';
import { isEnabled, RESTART_KEYS, SECTION } from './settings';
import { StatusItem } from './status';

let session: ServerSession | undefined;

/** Flip `diffill.enable` where it is set (workspace folder, workspace, else user settings). */
async function toggle(): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const where = config.inspect<boolean>('enable');
    const target =
        where?.workspaceFolderValue !== undefined
            ? vscode.ConfigurationTarget.WorkspaceFolder
            : where?.workspaceValue !== undefined
              ? vscode.ConfigurationTarget.Workspace
              : vscode.ConfigurationTarget.Global;
    const enabled = !isEnabled(config);
    await config.update('enable', enabled, target);
    if (!enabled) {
        await vscode.commands.executeCommand('editor.action.inlineSuggest.hide');
    }
}

export function activate(context: vscode.ExtensionContext): void {
    const log = vscode.window.createOutputChannel('Diffill', { log: true });
    const status = new StatusItem();
    status.setEnabled(isEnabled(vscode.workspace.getConfiguration(SECTION)));
    let shown = '';
    const current = new ServerSession(log, {
        state: (state) => {
            const key = JSON.stringify(state);
            if (key === shown) {
                return; // the same state from a notification and a stats reply
            }
            shown = key;
            if (state.kind === 'error') {
                log.error(state.message);
            } else {
                log.info(
                    `model state: ${state.kind}${state.kind === 'ready' && state.engine ? ` (${state.engine})` : ''}`,
                );
            }
            status.setState(state);
        },
        completion: (latency) => status.setLatency(latency),
    });
    session = current;
    context.subscriptions.push(
        log,
        status,
        current,
        vscode.commands.registerCommand('diffill.toggle', toggle),
        vscode.commands.registerCommand('diffill.restart', () => current.restart()),
        vscode.commands.registerCommand('diffill.showLog', () => log.show()),
        vscode.workspace.onDidChangeConfiguration((event) => {
            if (event.affectsConfiguration(`${SECTION}.enable`)) {
                status.setEnabled(isEnabled(vscode.workspace.getConfiguration(SECTION)));
            }
            if (RESTART_KEYS.some((key) => event.affectsConfiguration(key))) {
                log.info('server command changed: restarting');
                void current.restart();
            }
        }),
    );
    // Not awaited: activation finishes at once; the status bar follows the start (errors included).
    void current.start();
}

export async function deactivate(): Promise<void> {
    await session?.stop();
    session = undefined;
}
