/**
 * Follows the model's state from the server and reports it (`ModelState`) to the status bar.
 *
 * - `diffill/status`: the server sends the `diffill/stats` object on every load state change (loading, ready,
 *   failed), for the first load and for every reload after a settings change.
 * - `diffill/stats` with `waitForModel` once the client runs: the server answers when the first load settles
 *   (an event on its side, not a poll), so the state is right even if a notification was missed.
 *
 * The load also shows as VS Code's own progress indicator: the server reports it with work-done progress
 * (`$/progress`), which the language client displays.
 */

import type { Disposable } from 'vscode';
import type { BaseLanguageClient } from 'vscode-languageclient/node';

import { fromStats, type ModelState, STATS_REQUEST, STATUS_NOTIFICATION } from './state';

/** Longest wait for the first load in one `diffill/stats` request; a slower load is simply asked again. */
const FIRST_LOAD_WAIT_S = 300;

export class ModelStateWatcher {
    constructor(
        private readonly client: BaseLanguageClient,
        private readonly report: (state: ModelState) => void,
        private readonly remote: () => boolean,
    ) {}

    /** Listen for `diffill/status`; registered before `start()` so it survives the client's own restarts. */
    listen(): Disposable {
        return this.client.onNotification(STATUS_NOTIFICATION, (params: unknown) =>
            this.report(fromStats(params, this.remote())),
        );
    }

    /** Report the first load's outcome; call when the client is running. */
    async settle(): Promise<void> {
        let state: ModelState = { kind: 'starting' };
        while (this.client.isRunning() && (state.kind === 'starting' || state.kind === 'loading')) {
            try {
                const reply: unknown = await this.client.sendRequest(STATS_REQUEST, {
                    waitForModel: FIRST_LOAD_WAIT_S,
                });
                state = fromStats(reply, this.remote());
            } catch (error) {
                if (!this.client.isRunning()) {
                    return; // stopped meanwhile: the session reports that
                }
                state = { kind: 'error', message: `${STATS_REQUEST} failed: ${String(error)}` };
            }
            this.report(state);
        }
    }
}
