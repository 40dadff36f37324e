/**
 * The server's stderr, line by line, into the log output channel at the right level.
 *
 * `lsp_server.cli` logs `"%(asctime)s %(levelname)s %(name)s: %(message)s"` to stderr. The language client's
 * default writes every stderr line as an error; here each record keeps its level (and drops the server's
 * timestamp, the channel adds its own), and lines without a header (traceback continuations) keep the level of
 * the record they belong to.
 */

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface LogLine {
    readonly level: Level;
    readonly text: string;
}

const LEVELS: Record<string, Level> = {
    DEBUG: 'debug',
    INFO: 'info',
    WARNING: 'warn',
    ERROR: 'error',
    CRITICAL: 'error',
};

// "2026-01-02 03:04:05,678 WARNING lsp_server.server: message"
const HEADER = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[,.]\d+)? (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$/;

/** The level and text of one stderr line; `previous` is the level of the line before it. */
export function parseServerLine(line: string, previous: Level = 'info'): LogLine {
    const match = HEADER.exec(line);
    if (match === null) {
        return { level: previous, text: line };
    }
    const [, level = 'INFO', text = ''] = match;
    return { level: LEVELS[level] ?? 'info', text };
}
