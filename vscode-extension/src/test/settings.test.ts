import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import {
    completionsWanted,
    type ConfigReader,
    isRemote,
    LANGUAGES,
    languageEnabled,
    serverEnvironment,
    serverLaunch,
    serverSettings,
} from '../settings';

/** A "diffill" section from dotted keys, answering nested reads the way WorkspaceConfiguration does. */
function config(values: Record<string, unknown>): ConfigReader {
    return {
        get(key: string): unknown {
            if (key in values) {
                return values[key];
            }
            const nested: Record<string, unknown> = {};
            for (const [name, value] of Object.entries(values)) {
                if (name.startsWith(`${key}.`)) {
                    nested[name.slice(key.length + 1)] = value;
                }
            }
            return Object.keys(nested).length > 0 ? nested : undefined;
        },
    };
}

describe('serverLaunch', () => {
    it('runs `diffill lsp` when nothing is set', () => {
        assert.deepEqual(serverLaunch(config({})), { command: 'diffill', args: ['lsp'] });
    });

    it('runs `<python> -m lsp_server` for a Python path', () => {
        assert.deepEqual(serverLaunch(config({ 'server.pythonPath': ' /venv/bin/python ' })), {
            command: '/venv/bin/python',
            args: ['-m', 'lsp_server'],
        });
    });

    it('prefers an explicit command line over the Python path', () => {
        const launch = serverLaunch(
            config({ 'server.command': ['py', '-m', 'lsp_server', '--model', '/m'], 'server.pythonPath': '/x' }),
        );
        assert.deepEqual(launch, { command: 'py', args: ['-m', 'lsp_server', '--model', '/m'] });
    });

    it('ignores an empty or malformed command line', () => {
        assert.deepEqual(serverLaunch(config({ 'server.command': [] })).command, 'diffill');
        assert.deepEqual(serverLaunch(config({ 'server.command': 'diffill lsp' })).command, 'diffill');
        assert.deepEqual(serverLaunch(config({ 'server.command': ['', 'x'] })), { command: 'x', args: [] });
    });
});

describe('serverEnvironment', () => {
    it('keeps string variables and drops anything else', () => {
        const env = serverEnvironment(config({ 'server.env': { SSL_CERT_FILE: '/ca.pem', BAD: 3 } }));
        assert.deepEqual(env, { SSL_CERT_FILE: '/ca.pem' });
        assert.deepEqual(serverEnvironment(config({})), {});
    });
});

describe('serverSettings', () => {
    it('sends the sections the server parses, as plain JSON, and nothing client-only', () => {
        const settings = serverSettings(
            config({
                enable: true,
                'server.command': ['x'],
                'server.env': { A: 'b' },
                'trace.server': 'verbose',
                'model.path': null,
                'remote.url': 'http://box:8765',
                'completion.steps': 4,
                'languages.enabled': { rust: false },
            }),
        );
        assert.deepEqual(settings, {
            model: { path: null },
            remote: { url: 'http://box:8765' },
            completion: { steps: 4 },
            languages: { enabled: { rust: false } },
        });
    });
});

describe('completionsWanted', () => {
    it('follows the global switch', () => {
        assert.equal(completionsWanted(config({ enable: false }), 'python'), false);
        assert.equal(completionsWanted(config({}), 'python'), true);
    });

    it('follows the server rule for languages: own flag, then "*", then on', () => {
        const flags = config({ 'languages.enabled': { Rust: false, '*': false, python: true } });
        assert.equal(languageEnabled(flags, 'rust'), false);
        assert.equal(languageEnabled(flags, 'python'), true);
        assert.equal(languageEnabled(flags, 'go'), false);
        assert.equal(languageEnabled(config({ 'languages.enabled': { rust: false } }), 'go'), true);
    });
});

describe('isRemote', () => {
    it('is true only for a non-blank URL', () => {
        assert.equal(isRemote(config({ 'remote.url': '  ' })), false);
        assert.equal(isRemote(config({ 'remote.url': 'http://box:8765' })), true);
    });
});

describe('package.json', () => {
    const manifest = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
        activationEvents: string[];
        contributes: { commands: { command: string }[]; configuration: { properties: Record<string, unknown> } };
    };

    it('activates on every served language', () => {
        assert.deepEqual(
            manifest.activationEvents,
            LANGUAGES.map((language) => `onLanguage:${language}`),
        );
    });

    it('contributes the commands the extension registers', () => {
        assert.deepEqual(manifest.contributes.commands.map((command) => command.command).sort(), [
            'diffill.restart',
            'diffill.showLog',
            'diffill.toggle',
        ]);
    });

    it('declares trace.server, which the language client reads by its id', () => {
        assert.ok('diffill.trace.server' in manifest.contributes.configuration.properties);
    });
});
