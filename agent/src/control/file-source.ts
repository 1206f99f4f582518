// Standalone configuration source: reads the YAML file given to `nodemesh agent --config`,
// validates it into a MeshState and hands every accepted change to the agent, reloading
// when the file changes. A broken file never replaces a good configuration.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { MeshState } from '../state/model.js';
import { applyConfig } from './apply.js';
import { parseConfig } from './config-docs.js';

export interface FileSourceOptions {
  /** This agent's node name. */
  node: string;
  log: Logger;
  /** Called with the first state, then whenever the accepted content or the rejections change. */
  onState: (state: MeshState) => void;
  cgroupExists?: (path: string) => boolean;
  /** Editors write a file in several steps; wait for them to settle. */
  debounceMs?: number;
}

export class FileSource {
  readonly path: string;
  #opts: FileSourceOptions;
  #state: MeshState | null = null;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Reloads run one after another, so an older read never overwrites a newer one. */
  #reloads: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(path: string, opts: FileSourceOptions) {
    this.path = path;
    this.#opts = opts;
  }

  /** The last accepted state (null before start). */
  get state(): MeshState | null {
    return this.#state;
  }

  /** Throws NodemeshError (NM_ERR_CONFIG_READ / NM_ERR_CONFIG_YAML) when the file cannot be used. */
  async start(): Promise<void> {
    this.#accept(await this.#load());
    // Watch the directory, not the file: editors and ConfigMap updates replace the file by
    // rename, which would leave a watch on the old inode blind.
    const file = basename(this.path);
    this.#watcher = watch(dirname(this.path), (_event, name) => {
      if (name === null || name === file) this.#schedule();
    });
    this.#watcher.on('error', (err) => {
      this.#opts.log.error({ config: this.path, err: err.message }, 'cannot watch the configuration file; changes will not be applied');
    });
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
  }

  #schedule(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#reloads = this.#reloads.then(() => this.#reload());
    }, this.#opts.debounceMs ?? 100);
  }

  async #reload(): Promise<void> {
    let state: MeshState;
    try {
      state = await this.#load();
    } catch (err) {
      this.#opts.log.error(
        { config: this.path, code: (err as NodemeshError).code, err: (err as Error).message, version: this.#state?.version },
        'configuration not applied; the last good configuration stays in force',
      );
      return;
    }
    if (this.#stopped) return;
    const previous = this.#state;
    if (previous && state.version === previous.version && isDeepStrictEqual(state.rejections, previous.rejections)) return;
    this.#accept(state);
  }

  async #load(): Promise<MeshState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      throw new NodemeshError(
        'NM_ERR_CONFIG_READ',
        `cannot read configuration file ${this.path}: ${(err as Error).message}; check the path given to --config and its permissions`,
        { cause: err },
      );
    }
    const docs = parseConfig(text, this.path);
    return applyConfig(this.#state, docs, { node: this.#opts.node, cgroupExists: this.#opts.cgroupExists });
  }

  #accept(state: MeshState): void {
    const { log } = this.#opts;
    for (const r of state.rejections) {
      log.warn({ config: this.path, ...r }, `${r.resource} rejected: ${r.field ? `${r.field} ` : ''}${r.reason}`);
    }
    this.#state = state;
    log.info(
      {
        config: this.path,
        version: state.version,
        nodes: state.nodes.size,
        pods: state.pods.size,
        services: state.services.size,
        rejected: state.rejections.length,
      },
      'configuration loaded',
    );
    this.#opts.onState(state);
  }
}
