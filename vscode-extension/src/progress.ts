/**
 * Follows the model's state from the server's messages and reports it (`ModelState`) to the status bar.
 *
 * Sources, in the order they arrive:
 * - `diffill/stats` with `waitForModel` when the client is running: the server answers once the first load
 *   settles (an event on its side, not a poll), which covers a server that cannot create progress tokens;
 * - work-done progress: the server creates a token per model load (`window/workDoneProgress/create`) and sends
 *   begin/report/end on it; at the end, `diffill/stats` says whether the load succeeded and what was loaded;
 * - `diffill/status` notifications (same object as `diffill/stats`), if the server sends them.
 *
 * The feature takes over `window/workDoneProgress/create` from the client's built-in progress feature
 * (initialised before it), so the load shows in the status bar instead of a separate progress indicator.
 */

import type { Disposable } from 'vscode';
import {
    type BaseLanguageClient,
    type FeatureState,
    type ProgressToken,
    type StaticFeature,
    WorkDoneProgress,
    WorkDoneProgressCreateRequest,
} from 'vscode-languageclient/node';

import { fromProgress, fromStats, type ModelState, STATS_REQUEST, STATUS_NOTIFICATION } from './state';

/** Longest wait for the first model load in one `diffill/stats` request; a slow load is asked again. */
const FIRST_LOAD_WAIT_S = 300;

export interface StateSink {
    (state: ModelState): void;
}

export class ModelStateFeature implements StaticFeature {
    private readonly listeners: Disposable[] = [];
    private readonly tokens = new Map<ProgressToken, Disposable>();
    private active = false;

    constructor(
        private readonly client: BaseLanguageClient,
        private readonly report: StateSink,
        private readonly remote: () => boolean,
    ) {}

    getState(): FeatureState {
        return { kind: 'static' };
    }

    fillClientCapabilities(): void {
        // window.workDoneProgress is already announced by the client's built-in progress feature.
    }

    initialize(): void {
        this.active = true;
        this.listeners.push(
            this.client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => this.watch(token)),
            this.client.onNotification(STATUS_NOTIFICATION, (params: unknown) =>
                this.report(fromStats(params, this.remote())),
            ),
        );
    }

    clear(): void {
        this.active = false;
        for (const listener of [...this.listeners, ...this.tokens.values()]) {
            listener.dispose();
        }
        this.listeners.length = 0;
        this.tokens.clear();
    }

    /** The first load's outcome: asked as soon as the client runs, answered when the load settles. */
    async awaitFirstLoad(): Promise<void> {
        let state: ModelState = { kind: 'starting' };
        while (this.active && (state.kind === 'starting' || state.kind === 'loading')) {
            state = await this.stats(FIRST_LOAD_WAIT_S);
            if (this.active) {
                this.report(state);
            }
        }
    }

    private watch(token: ProgressToken): void {
        const subscription = this.client.onProgress(WorkDoneProgress.type, token, (value) => {
            const state = fromProgress(value);
            if (state !== undefined) {
                this.report(state);
                return;
            }
            this.tokens.get(token)?.dispose();
            this.tokens.delete(token);
            void this.stats(0).then((outcome) => this.active && this.report(outcome));
        });
        this.tokens.set(token, subscription);
    }

    private async stats(waitForModel: number): Promise<ModelState> {
        try {
            const reply: unknown = await this.client.sendRequest(STATS_REQUEST, { waitForModel });
            return fromStats(reply, this.remote());
        } catch (error) {
            return { kind: 'error', message: `${STATS_REQUEST} failed: ${String(error)}` };
        }
    }
}
