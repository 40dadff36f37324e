import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseServerLine } from '../serverLog';
import { describeEngine, formatCount, fromStats, present } from '../state';

describe('fromStats', () => {
    it('maps each server state', () => {
        assert.deepEqual(fromStats({ state: 'idle' }, false), { kind: 'starting' });
        assert.equal(fromStats({ state: 'loading' }, false).kind, 'loading');
        assert.deepEqual(fromStats({ state: 'ready', engine: { name: 'tiny', device: 'cpu' } }, true), {
            kind: 'ready',
            remote: true,
            engine: 'tiny, cpu',
        });
        assert.deepEqual(fromStats({ state: 'ready', engine: { name: 'm', remote: 'https://box:8711' } }, false), {
            kind: 'ready',
            remote: true,
            engine: 'm, https://box:8711',
        });
        assert.deepEqual(fromStats({ state: 'failed', error: 'no config.json' }, false), {
            kind: 'error',
            message: 'no config.json',
        });
    });

    it('reports an unexpected reply as an error, not a crash', () => {
        assert.equal(fromStats(null, false).kind, 'error');
        assert.equal(fromStats({ state: 'warming' }, false).kind, 'error');
        assert.equal(fromStats({ state: 'failed', error: null }, false).kind, 'error');
    });
});

describe('describeEngine', () => {
    it('summarises the engine description', () => {
        const engine = { name: 'default', kind: 'diffusion', parameters: 124_000_000, device: 'cuda:0', dtype: 'bf16' };
        assert.equal(describeEngine(engine), 'default, diffusion, 124M parameters, cuda:0');
        assert.equal(describeEngine(undefined), '');
        assert.equal(formatCount(172_352), '172.4k');
        assert.equal(formatCount(999), '999');
    });
});

describe('present', () => {
    const ready = { kind: 'ready', remote: false, engine: 'tiny' } as const;

    it('shows the latency of the last completion when ready', () => {
        assert.equal(present(ready, true, { ms: 123.4, items: 2 }).text, '$(check) Diffill 123 ms');
        assert.equal(present({ ...ready, remote: true }, true, undefined).text, '$(cloud) Diffill');
    });

    it('shows off, loading and error states', () => {
        assert.equal(present(ready, false, undefined).text, '$(circle-slash) Diffill');
        assert.match(present({ kind: 'loading', detail: 'warming up' }, true, undefined).text, /loading/);
        const error = present({ kind: 'error', message: 'boom' }, true, undefined);
        assert.equal(error.error, true);
        assert.match(error.tooltip, /^Error: boom/);
    });
});

describe('parseServerLine', () => {
    it('keeps the level of a Python log record and drops its timestamp', () => {
        assert.deepEqual(parseServerLine('2026-01-02 03:04:05,678 WARNING lsp_server.server: slow'), {
            level: 'warn',
            text: 'lsp_server.server: slow',
        });
        assert.equal(parseServerLine('2026-01-02 03:04:05,678 ERROR x: y').level, 'error');
    });

    it('gives continuation lines the level of their record', () => {
        assert.deepEqual(parseServerLine('Traceback (most recent call last):', 'error'), {
            level: 'error',
            text: 'Traceback (most recent call last):',
        });
        assert.equal(parseServerLine('plain line').level, 'info');
    });
});
