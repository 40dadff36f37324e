/**
 * Starts `diffill lsp` (or `python -m lsp_server`) over stdio with vscode-languageclient and owns its lifetime.
 *
 * Inline completion is one of the language client's default features (≥ 10): the server advertises
 * `inlineCompletionProvider` and the client registers the VS Code provider, so there is no hand-written one.
 * The middleware around it measures latency and honours the on/off switch; classic completion is silenced
 * (VS Code shows Diffill as ghost text only, and a second request for the same document would make the server
 * drop the inline one as stale). Settings go to the server as `initializationOptions` and, on change, through
 * `workspace/didChangeConfiguration` / `workspace/configuration` (`synchronize.configurationSection`).
 *
 * Start, stop and restart are queued one after another and await the client's own promises; nothing sleeps.
 */

import { performance } from 'node:perf_hooks';
import * as readline from 'node:readline';
import type { Readable } from 'node:stream';

import * as vscode from 'vscode';
import {
    type DocumentSelector,
    type Executable,
    LanguageClient,
    type LanguageClientOptions,
    RevealOutputChannelOn,
    State,
    TransportKind,
} from 'vscode-languageclient/node';

import { ModelStateWatcher } from './modelState';
import { parseServerLine, type Level } from './serverLog';
import {
    completionsWanted,
    isRemote,
    LANGUAGES,
    SECTION,
    serverEnvironment,
    serverLaunch,
    serverSettings,
} from './settings';
import type { Latency, ModelState } from './state';

export interface SessionEvents {
    state(state: ModelState): void;
    completion(latency: Latency): void;
}

function configuration(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
}

function documentSelector(): DocumentSelector {
    return LANGUAGES.flatMap((language) => [
        { scheme: 'file', language },
        { scheme: 'untitled', language },
    ]);
}

function countItems(result: vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined): number {
    if (result === null || result === undefined) {
        return 0;
    }
    return Array.isArray(result) ? result.length : result.items.length;
}

function pipeLines(input: Readable, log: vscode.LogOutputChannel, parse: boolean): void {
    let previous: Level = 'info';
    const lines = readline.createInterface({ input, crlfDelay: Infinity, terminal: false });
    lines.on('line', (line: string) => {
        const { level, text } = parse ? parseServerLine(line, previous) : { level: 'info' as const, text: line };
        previous = level;
        log[level](text);
    });
}

function serverExecutable(): Executable {
    const config = configuration();
    const { command, args } = serverLaunch(config);
    const folder = vscode.workspace.workspaceFolders?.[0];
    // Unbuffered, so log lines reach the channel as they are written.
    const env = { ...process.env, PYTHONUNBUFFERED: '1', ...serverEnvironment(config) };
    return {
        command,
        args,
        transport: TransportKind.stdio,
        options: { env, ...(folder ? { cwd: folder.uri.fsPath } : {}) },
    };
}

function clientOptions(log: vscode.LogOutputChannel, events: SessionEvents): LanguageClientOptions {
    return {
        documentSelector: documentSelector(),
        outputChannel: log,
        revealOutputChannelOn: RevealOutputChannelOn.Never,
        initializationOptions: () => serverSettings(configuration()),
        synchronize: { configurationSection: SECTION },
        stdioOptions: {
            stdout: (input, channel) => pipeLines(input, channel, false),
            stderr: (input, channel) => pipeLines(input, channel, true),
        },
        middleware: {
            provideInlineCompletionItems: async (document, position, context, token, next) => {
                if (!completionsWanted(configuration(), document.languageId)) {
                    return null;
                }
                const started = performance.now();
                const result = await next(document, position, context, token);
                if (!token.isCancellationRequested) {
                    const latency = { ms: performance.now() - started, items: countItems(result) };
                    log.debug(`inline completion: ${latency.items} item(s) in ${latency.ms.toFixed(0)} ms`);
                    events.completion(latency);
                }
                return result;
            },
            provideCompletionItem: () => undefined,
        },
    };
}

/** One language client at a time; `restart` replaces it so command-line changes take effect. */
export class ServerSession implements vscode.Disposable {
    private client: LanguageClient | undefined;
    private listeners: vscode.Disposable[] = []; // the current client's, disposed with it
    private queue: Promise<void> = Promise.resolve();

    constructor(
        private readonly log: vscode.LogOutputChannel,
        private readonly events: SessionEvents,
    ) {}

    start(): Promise<void> {
        return this.enqueue(() => this.doStart());
    }

    stop(): Promise<void> {
        return this.enqueue(() => this.doStop());
    }

    restart(): Promise<void> {
        return this.enqueue(async () => {
            await this.doStop();
            await this.doStart();
        });
    }

    dispose(): void {
        void this.stop();
    }

    private enqueue(operation: () => Promise<void>): Promise<void> {
        const next = this.queue.then(operation, operation);
        this.queue = next.catch(() => undefined);
        return next;
    }

    private async doStart(): Promise<void> {
        const executable = serverExecutable();
        this.log.info(`starting the server: ${[executable.command, ...(executable.args ?? [])].join(' ')}`);
        const client = new LanguageClient(SECTION, 'Diffill', executable, clientOptions(this.log, this.events));
        // A replaced client's late messages (a reply in flight while it stops) must not repaint the status.
        const report = (state: ModelState): void => {
            if (this.client === client) {
                this.events.state(state);
            }
        };
        const watcher = new ModelStateWatcher(client, report, () => isRemote(configuration()));
        this.listeners.push(watcher.listen());
        // Also fires when the client restarts a crashed server on its own (its default error handler).
        const stateChanges = client.onDidChangeState(({ newState }) => {
            if (newState === State.Starting) {
                report({ kind: 'starting' });
            } else if (newState === State.Running) {
                void watcher.settle();
            } else if (newState === State.Stopped && this.client === client) {
                report({
                    kind: 'error',
                    message: 'the server stopped; see the Diffill log, then run Diffill: Restart Server',
                });
            }
        });
        this.listeners.push(stateChanges);
        this.client = client;
        try {
            await client.start();
        } catch (error) {
            report({ kind: 'error', message: `could not start ${executable.command}: ${String(error)}` });
        }
    }

    private async doStop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        if (client === undefined) {
            return;
        }
        try {
            await client.dispose(); // stop: shutdown request, exit notification, then the process ends
        } catch (error) {
            this.log.warn(`stopping the server: ${String(error)}`);
        }
        for (const listener of this.listeners.splice(0)) {
            listener.dispose();
        }
        this.events.state({ kind: 'stopped' });
    }
}
