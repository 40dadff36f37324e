/**
 * The model's state as the status bar shows it, and the pure mappings into it from what the server says.
 *
 * The server answers `diffill/stats` with `{state: "idle" | "loading" | "ready" | "failed", error, engine, ...}`
 * and sends the same object as a `diffill/status` notification whenever the load state changes
 * (`lsp_server.server.DiffillServer.publish_status`).
 */

export const STATS_REQUEST = 'diffill/stats';
export const STATUS_NOTIFICATION = 'diffill/status';

export type ModelState =
    | { readonly kind: 'stopped' }
    | { readonly kind: 'starting' }
    | { readonly kind: 'loading'; readonly detail: string }
    | { readonly kind: 'ready'; readonly remote: boolean; readonly engine: string }
    | { readonly kind: 'error'; readonly message: string };

export interface Latency {
    readonly ms: number;
    readonly items: number;
}

export interface Presentation {
    readonly text: string;
    readonly tooltip: string;
    readonly error: boolean;
}

function record(value: unknown): Record<string, unknown> {
    return value !== null && typeof value === 'object' && !Array.isArray(value)
        ? (value as Record<string, unknown>)
        : {};
}

/**
 * "tiny, diffusion, 1.2M parameters, cpu" from the engine description (`CompletionEngine.describe()`); a remote
 * engine's description adds `remote`, the box's URL.
 */
export function describeEngine(engine: unknown): string {
    const info = record(engine);
    const parts: string[] = [];
    for (const key of ['name', 'kind']) {
        const value = info[key];
        if (typeof value === 'string' && value) {
            parts.push(value);
        }
    }
    const parameters = info['parameters'];
    if (typeof parameters === 'number' && parameters > 0) {
        parts.push(`${formatCount(parameters)} parameters`);
    }
    for (const key of ['device', 'remote']) {
        const value = info[key];
        if (typeof value === 'string' && value) {
            parts.push(value);
        }
    }
    return parts.join(', ');
}

export function formatCount(count: number): string {
    const units: [number, string][] = [
        [1e9, 'B'],
        [1e6, 'M'],
        [1e3, 'k'],
    ];
    for (const [size, unit] of units) {
        if (count >= size) {
            return `${(count / size).toFixed(1).replace(/\.0$/, '')}${unit}`;
        }
    }
    return String(count);
}

/**
 * The state in a `diffill/stats` reply or `diffill/status` notification. `remote` (from the settings) says what is
 * loading; once ready, the engine's own description says whether it is remote.
 */
export function fromStats(reply: unknown, remote: boolean): ModelState {
    const stats = record(reply);
    const engine = record(stats['engine']);
    switch (stats['state']) {
        case 'idle':
            return { kind: 'starting' };
        case 'loading':
            return { kind: 'loading', detail: remote ? 'connecting to the remote engine' : 'loading the model' };
        case 'ready':
            return {
                kind: 'ready',
                remote: typeof engine['remote'] === 'string' || remote,
                engine: describeEngine(engine),
            };
        case 'failed': {
            const error = stats['error'];
            return { kind: 'error', message: typeof error === 'string' && error ? error : 'the model failed to load' };
        }
        default:
            return { kind: 'error', message: `unexpected server state ${JSON.stringify(stats['state'] ?? null)}` };
    }
}

function latencyText(latency: Latency | undefined): string {
    return latency === undefined ? '' : ` ${Math.round(latency.ms)} ms`;
}

function stateLine(state: ModelState): string {
    switch (state.kind) {
        case 'stopped':
            return 'Server stopped.';
        case 'starting':
            return 'Starting the server…';
        case 'loading':
            return `Loading: ${state.detail}…`;
        case 'ready':
            return `${state.remote ? 'Remote engine' : 'Model'} ready${state.engine ? ` (${state.engine})` : ''}.`;
        case 'error':
            return `Error: ${state.message}`;
    }
}

/** Status bar text and tooltip for a state, the global switch and the last completion's latency. */
export function present(state: ModelState, enabled: boolean, latency: Latency | undefined): Presentation {
    const lines = [stateLine(state)];
    if (latency !== undefined) {
        lines.push(`Last completion: ${Math.round(latency.ms)} ms, ${latency.items} suggestion(s).`);
    }
    lines.push(enabled ? 'Completions on (click to turn off).' : 'Completions off (click to turn on).');
    const tooltip = lines.join('\n');
    if (!enabled) {
        return { text: '$(circle-slash) Diffill', tooltip, error: false };
    }
    switch (state.kind) {
        case 'stopped':
            return { text: '$(debug-stop) Diffill', tooltip, error: false };
        case 'starting':
            return { text: '$(loading~spin) Diffill', tooltip, error: false };
        case 'loading':
            return { text: '$(loading~spin) Diffill: loading', tooltip, error: false };
        case 'ready':
            return {
                text: `$(${state.remote ? 'cloud' : 'check'}) Diffill${latencyText(latency)}`,
                tooltip,
                error: false,
            };
        case 'error':
            return { text: '$(error) Diffill', tooltip, error: true };
    }
}
