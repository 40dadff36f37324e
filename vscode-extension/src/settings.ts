/**
 * The extension's view of the "diffill" configuration section: how to start the server, what to send it, and
 * whether completions are wanted for a document.
 *
 * Pure functions over a `ConfigReader` (what `vscode.workspace.getConfiguration("diffill")` returns), so they
 * are unit-tested without VS Code. The keys the server reads (model, remote, completion, crossFile, languages,
 * limits) mirror `lsp_server.settings.Settings`; `enable`, `server.*` and `trace.*` belong to the client alone.
 */

export const SECTION = 'diffill';

/** VS Code language ids served; package.json's activationEvents list the same ids (checked by a unit test). */
export const LANGUAGES = [
    'python',
    'javascript',
    'javascriptreact',
    'typescript',
    'typescriptreact',
    'go',
    'rust',
    'java',
    'c',
    'cpp',
] as const;

/** The sections of "diffill" that the server parses (`lsp_server.settings.Settings`' fields). */
export const SERVER_SECTIONS = ['model', 'remote', 'completion', 'crossFile', 'languages', 'limits'] as const;

/** Keys whose change needs a new server process (its command line), not just a configuration push. */
export const RESTART_KEYS = [`${SECTION}.server`] as const;

/** The subset of `vscode.WorkspaceConfiguration` used here, scoped to the "diffill" section. */
export interface ConfigReader {
    get(key: string): unknown;
}

export interface ServerLaunch {
    command: string;
    args: string[];
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const DEFAULT_LAUNCH: ServerLaunch = { command: 'diffill', args: ['lsp'] };

function text(value: unknown): string {
    return typeof value === 'string' ? value.trim() : '';
}

function strings(value: unknown): string[] {
    return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/**
 * The server's command line: `server.command` when set, else `<server.pythonPath> -m lsp_server`, else
 * `diffill lsp` from PATH. The language client appends `--stdio`, which the server accepts.
 */
export function serverLaunch(config: ConfigReader): ServerLaunch {
    const [command, ...args] = strings(config.get('server.command')).filter((part) => part.length > 0);
    if (command !== undefined) {
        return { command, args };
    }
    const python = text(config.get('server.pythonPath'));
    if (python) {
        return { command: python, args: ['-m', 'lsp_server'] };
    }
    return { ...DEFAULT_LAUNCH, args: [...DEFAULT_LAUNCH.args] };
}

/** `server.env`: extra environment variables for the server process (non-string values are ignored). */
export function serverEnvironment(config: ConfigReader): Record<string, string> {
    const env = config.get('server.env');
    if (env === null || typeof env !== 'object' || Array.isArray(env)) {
        return {};
    }
    return Object.fromEntries(
        Object.entries(env as Record<string, unknown>).filter(
            (entry): entry is [string, string] => typeof entry[1] === 'string',
        ),
    );
}

/** A JSON copy of a configuration value: drops functions and proxies, keeps null (the server's "unset"). */
function toJson(value: unknown): Json | undefined {
    if (value === undefined) {
        return undefined;
    }
    return JSON.parse(JSON.stringify(value)) as Json;
}

/**
 * What the server reads, as plain JSON: sent as `initializationOptions`. Later changes reach the server
 * through `workspace/didChangeConfiguration` and `workspace/configuration` (the language client's
 * `synchronize.configurationSection`).
 */
export function serverSettings(config: ConfigReader): { [key: string]: Json } {
    const settings: { [key: string]: Json } = {};
    for (const section of SERVER_SECTIONS) {
        const value = toJson(config.get(section));
        if (value !== undefined) {
            settings[section] = value;
        }
    }
    return settings;
}

/** True when completions come from a `diffill serve` box rather than a local model. */
export function isRemote(config: ConfigReader): boolean {
    return text(config.get('remote.url')).length > 0;
}

/** The global switch (`diffill.enable`, flipped by the toggle command). */
export function isEnabled(config: ConfigReader): boolean {
    return config.get('enable') !== false;
}

/**
 * Whether `languageId` gets completions under `languages.enabled`, with the server's rule
 * (`LanguageSettings.allows`): the id's own flag, else the "*" flag, else on. Checked in the client too so a
 * disabled language costs no request.
 */
export function languageEnabled(config: ConfigReader, languageId: string): boolean {
    const flags = config.get('languages.enabled');
    if (flags === null || typeof flags !== 'object' || Array.isArray(flags)) {
        return true;
    }
    const table = Object.fromEntries(
        Object.entries(flags as Record<string, unknown>).map(([key, flag]) => [key.toLowerCase(), flag]),
    );
    const flag = table[languageId.toLowerCase()] ?? table['*'];
    return flag !== false;
}

export function completionsWanted(config: ConfigReader, languageId: string): boolean {
    return isEnabled(config) && languageEnabled(config, languageId);
}
