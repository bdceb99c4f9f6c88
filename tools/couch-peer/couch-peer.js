#!/usr/bin/env node
// couch-peer: Switchboard's CouchDB-compatible test server.
//
// express-pouchdb 4.2.0 over PouchDB 7.3.1 (memory or leveldb), with the
// gaps listed in README.md next to this file fixed so that it
// behaves like CouchDB 3 where our Rust code and couch_rs depend on it.
// See README.md next to this file for the list and the reasons.
//
// Usage:
//   node couch-peer.js PORT --in-memory [--admin USER:PASSWORD]
//   node couch-peer.js PORT DIR         [--admin USER:PASSWORD]
// PORT 0 picks a free port. Binds 127.0.0.1 only. Prints exactly one line
// `couch-peer listening on http://127.0.0.1:PORT` on stdout when ready;
// everything else goes to stderr.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const events = require('events');
const vm = require('vm');

// ---------------------------------------------------------------------------
// Never die on a stray promise rejection (stock express-pouchdb leaves several
// behind, and Node >= 15 exits on them by default).
process.on('unhandledRejection', (reason) => {
  console.error('couch-peer: unhandled promise rejection (ignored):', reason);
});
process.on('uncaughtException', (err) => {
  console.error('couch-peer: uncaught exception (ignored):', err);
});
// Many concurrent live feeds on one db are normal in tests.
events.defaultMaxListeners = 1000;

// ---------------------------------------------------------------------------
// Command line.
function usage(msg) {
  if (msg) console.error('couch-peer: ' + msg);
  console.error('usage: node couch-peer.js PORT (--in-memory | DIR) [--admin USER:PASSWORD]');
  process.exit(2);
}
const argv = process.argv.slice(2);
let port = null;
let dataDir = null;
let inMemory = false;
let admin = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--in-memory') inMemory = true;
  else if (a === '--admin') admin = argv[++i];
  else if (a === '-h' || a === '--help') usage();
  else if (port === null) port = a;
  else if (dataDir === null) dataDir = a;
  else usage('unexpected argument ' + JSON.stringify(a));
}
if (port === null || !/^\d+$/.test(port) || Number(port) > 65535) usage('PORT must be a number 0-65535');
port = Number(port);
if (inMemory === (dataDir !== null)) usage('give exactly one of --in-memory or DIR');
if (admin !== null && !/^[^:]+:.+$/.test(admin)) usage('--admin wants USER:PASSWORD');
if (dataDir !== null) {
  dataDir = path.resolve(dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
}

// ---------------------------------------------------------------------------
// Module patches that must be in place before express-pouchdb loads.
function patchModule(request, makeExports) {
  const resolved = require.resolve(request);
  const original = require(resolved);
  require.cache[resolved].exports = makeExports(original);
}

// Database names are kept verbatim: `numbers/+1415` is its own database
// (stock runs every name through sanitize-filename, which drops `/`).
patchModule('express-pouchdb/lib/clean-filename', () => (name) => name);

const utils = require('express-pouchdb/lib/utils');
const { getOrCreateDB } = require('express-pouchdb/lib/create-or-delete-dbs');
const { matchesSelector, massageSelector } = require('pouchdb-selector-core');

// Resolve a db for `/:db/...` routes. Same as stock, but the 404 reason is
// CouchDB's and no directories are created in the cwd for in-memory dbs.
utils.setDBOnReq = function setDBOnReq(dbName, dbWrapper, req, res, next) {
  if (!dbNames.has(dbName)) return sendMissingDb(res);
  getOrCreateDB(req.PouchDB, dbName)
    .then((db) => {
      ensureParentDir(dbName);
      return dbWrapper.wrap(dbName, db).then(() => {
        req.db = db;
        next();
      });
    })
    .catch((e) => utils.sendError(res, e));
};

// The names of the databases that exist, kept in a Set. Stock asks `PouchDB.allDbs()` on every
// request that names a database, and that builds a new array of every name (each one
// URI-decoded) to search it: O(databases) per request, so creating 10,000 databases took
// minutes and every request at that size paid milliseconds. The Set is filled once from
// `allDbs()` before the server listens and then kept by PouchDB's own `created`/`destroyed`
// events (the ones pouchdb-all-dbs keeps its list by), with the same names it lists.
const dbNames = {
  set: new Set(),
  has(name) {
    return this.set.has(name);
  },
  // The name pouchdb-all-dbs would list for a PouchDB name, or null for one it ignores
  // (its own list, view indexes, remote databases).
  listed(name) {
    const n = String(name).replace(/^_pouch_/, '');
    if (n === 'pouch__all_dbs__' || n.indexOf('-mrview-') !== -1 || /^https?:\/\//.test(n)) return null;
    try {
      return decodeURIComponent(n);
    } catch (e) {
      return n;
    }
  },
  watch(PouchDB) {
    PouchDB.on('created', (name) => {
      const n = this.listed(name);
      if (n !== null) this.set.add(n);
    });
    PouchDB.on('destroyed', (name) => {
      const n = this.listed(name);
      if (n !== null) this.set.delete(n);
    });
  },
  load(PouchDB, done) {
    // express-pouchdb installs `allDbs` when its daemons start, just after the app is built.
    if (typeof PouchDB.allDbs !== 'function') return setTimeout(() => this.load(PouchDB, done), 10);
    PouchDB.allDbs((err, names) => {
      if (!err) for (const n of names) this.set.add(n);
      done(err || null);
    });
  },
};

// With leveldb, `a/b` lives in DIR/a/b: its parent directory must exist.
function ensureParentDir(dbName) {
  if (dataDir === null || dbName.indexOf('/') === -1) return;
  fs.mkdirSync(path.dirname(path.join(dataDir, dbName)), { recursive: true });
}

function sendMissingDb(res) {
  utils.sendJSON(res, 404, { error: 'not_found', reason: 'Database does not exist.' });
}
function sendBadRequest(res, reason) {
  utils.sendJSON(res, 400, { error: 'bad_request', reason });
}

// Creating and deleting databases is for server admins (everyone, in admin party).
function isServerAdmin(req) {
  const ctx = req.couchSession && req.couchSession.userCtx;
  return !ctx || (Array.isArray(ctx.roles) && ctx.roles.indexOf('_admin') !== -1);
}
function sendNotServerAdmin(res) {
  utils.sendJSON(res, 401, { error: 'unauthorized', reason: 'You are not a server admin.' });
}

// --- CouchDB database-name rules -------------------------------------------
const DB_NAME_RE = /^[a-z][a-z0-9_$()+/-]*$/;
const SYSTEM_DBS = new Set(['_users', '_replicator', '_global_changes']);
function validDbName(name) {
  return DB_NAME_RE.test(name) || SYSTEM_DBS.has(name);
}

// --- root-level routes, installed just before stock routes/root -------------
const expressPouchPkg = require('express-pouchdb/package.json');
patchModule('express-pouchdb/lib/routes/root', (original) => (app) => {
  app.get('/', (req, res) => {
    const json = {
      couchdb: 'Welcome',
      'express-pouchdb': 'Welcome!',
      version: expressPouchPkg.version,
      'pouchdb-adapters': req.PouchDB.preferredAdapters,
      vendor: app.couchConfig.getSection('vendor'),
      features: [],
    };
    let uuid = app.couchConfig.get('couchdb', 'uuid');
    if (uuid) {
      json.uuid = uuid;
      return utils.sendJSON(res, 200, json);
    }
    uuid = require('express-pouchdb/lib/uuids')(1)[0];
    app.couchConfig.set('couchdb', 'uuid', uuid, () => {
      json.uuid = uuid;
      utils.sendJSON(res, 200, json);
    });
  });

  app.get('/_up', (req, res) => utils.sendJSON(res, 200, { status: 'ok', seeds: {} }));

  app.get('/_db_updates', (req, res) => {
    if (!isServerAdmin(req)) return sendNotServerAdmin(res);
    dbUpdates.seed(req.PouchDB, (err) => {
      if (err) return utils.sendError(res, err);
      handleDbUpdates(req, res);
    });
  });

  // Sorted like CouchDB, with its paging parameters.
  app.get('/_all_dbs', (req, res) => {
    {
      const q = req.query;
      let list = Array.from(dbNames.set).filter((n) => n !== 'pouch__auth_sessions__').sort();
      const start = q.start_key !== undefined ? q.start_key : q.startkey;
      const end = q.end_key !== undefined ? q.end_key : q.endkey;
      if (q.descending === true) {
        list.reverse();
        if (start !== undefined) list = list.filter((n) => n <= String(start));
        if (end !== undefined) list = list.filter((n) => n >= String(end));
      } else {
        if (start !== undefined) list = list.filter((n) => n >= String(start));
        if (end !== undefined) list = list.filter((n) => n <= String(end));
      }
      const skip = Number.isInteger(q.skip) && q.skip > 0 ? q.skip : 0;
      list = list.slice(skip);
      if (Number.isInteger(q.limit) && q.limit >= 0) list = list.slice(0, q.limit);
      utils.sendJSON(res, 200, list);
    }
  });

  original(app);
});

// --- database-level routes, installed just before stock routes/db ----------
const DB_START_TIME = String(Date.now() * 1000);
patchModule('express-pouchdb/lib/routes/db', (original) => (app) => {
  app.put('/:db', utils.jsonParser, (req, res) => {
    const name = req.params.db;
    if (!validDbName(name)) {
      return utils.sendJSON(res, 400, {
        error: 'illegal_database_name',
        reason:
          "Name: '" + name + "'. Only lowercase characters (a-z), digits (0-9), and any of the " +
          'characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.',
      });
    }
    if (!isServerAdmin(req)) return sendNotServerAdmin(res);
    {
      if (dbNames.has(name)) {
        return utils.sendJSON(res, 412, {
          error: 'file_exists',
          reason: 'The database could not be created, the file already exists.',
        });
      }
      try {
        ensureParentDir(name);
      } catch (e) {
        return utils.sendError(res, e, 500);
      }
      // PouchDB.new() (not new PouchDB()) so the security plugins apply. It returns the db,
      // or a promise of it, which rejects with a 401 for a non-admin (stock left that
      // rejection unhandled and the request hanging).
      Promise.resolve(req.PouchDB.new(name, utils.makeOpts(req)))
        .then((db) => db.info())
        .then(
          () => {
            res.location('/' + encodeURIComponent(name));
            utils.sendJSON(res, 201, { ok: true });
          },
          (e) => utils.sendError(res, e, 412),
        );
    }
  });

  app.delete('/:db', (req, res, next) => {
    if (req.query.rev) return next(); // stock answers the "did you mean a doc?" 400
    // Checked here: stock drops the db from its cache before its own check fails, and the
    // db is then unusable even for admins.
    if (!isServerAdmin(req)) return sendNotServerAdmin(res);
    if (!dbNames.has(req.params.db)) return sendMissingDb(res);
    next();
  });

  // CouchDB 3 shaped db info (couch_rs's DbInfo needs every one of these).
  app.get('/:db', (req, res) => {
    utils.setDBOnReq(req.params.db, app.dbWrapper, req, res, () => {
      dbInfo(req.db, utils.makeOpts(req))
        .then((info) => utils.sendJSON(res, 200, info))
        .catch((e) => utils.sendError(res, e));
    });
  });

  original(app);
});

async function dbInfo(db, opts) {
  const info = await db.info(opts);
  // The size on disk is measured here, for this answer only (see `diskSize`).
  const diskSize = inMemory ? 0 : await db.getDiskSize().catch(() => 0);
  // doc_del_count: PouchDB does not keep it, so count deleted leaves.
  let deleted = 0;
  await runChanges(db, { since: 0 }, (ch) => {
    if (ch.deleted) deleted++;
  }).done;
  const disk = typeof diskSize === 'number' ? diskSize : 0;
  return Object.assign({}, info, {
    db_name: info.db_name,
    update_seq: String(info.update_seq),
    purge_seq: '0',
    doc_count: info.doc_count,
    doc_del_count: deleted,
    sizes: { file: disk, external: 0, active: disk },
    disk_size: disk,
    compact_running: false,
    disk_format_version: 8,
    cluster: { q: 1, n: 1, w: 1, r: 1 },
    props: {},
    instance_start_time: '0',
  });
}

// --- _find with a bookmark ---------------------------------------------------
patchModule('express-pouchdb/lib/routes/find', (original) => (app) => {
  app.post('/:db/_find', utils.jsonParser, (req, res) => {
    const body = Object.assign({}, req.body || {});
    let skip = Number.isInteger(body.skip) && body.skip > 0 ? body.skip : 0;
    const bookmark = body.bookmark;
    delete body.bookmark;
    if (bookmark !== undefined && bookmark !== null && bookmark !== 'nil') {
      let decoded = null;
      try {
        decoded = JSON.parse(Buffer.from(String(bookmark), 'base64').toString('utf8'));
      } catch (e) {
        decoded = null;
      }
      if (!decoded || !Number.isInteger(decoded.skip) || decoded.skip < 0) {
        return utils.sendJSON(res, 400, {
          error: 'invalid_bookmark',
          reason: 'Invalid bookmark value: ' + JSON.stringify(bookmark),
        });
      }
      skip = decoded.skip;
    }
    body.skip = skip;
    req.db.find(body).then(
      (result) => {
        const next = skip + result.docs.length;
        result.bookmark = Buffer.from(JSON.stringify({ skip: next })).toString('base64');
        utils.sendJSON(res, 200, result);
      },
      (err) => utils.sendError(res, err, 400),
    );
  });
  original(app);
});

// --- _changes, re-implemented ------------------------------------------------
patchModule('express-pouchdb/lib/routes/changes', () => (app) => {
  utils.requires(app, 'routes/db');
  const handler = (req, res) => {
    handleChanges(req, res).catch((err) => {
      console.error('couch-peer: _changes failed:', err);
      if (!res.headersSent) utils.sendError(res, err);
      else res.end();
    });
  };
  app.get('/:db/_changes', handler);
  app.post('/:db/_changes', utils.jsonParser, handler);
});

const FEEDS = new Set(['normal', 'continuous', 'live', 'longpoll', 'eventsource']);
const DEFAULT_TIMEOUT_MS = 60000;

// A live feed's `heartbeat` and `timeout` query parameters (`_changes` and `_db_updates` read them
// alike): { heartbeat, timeout }, or null after answering 400 for a bad value.
function feedTimers(q, res) {
  let heartbeat = null;
  if (q.heartbeat === true) heartbeat = DEFAULT_HEARTBEAT_MS;
  else if (typeof q.heartbeat === 'number' && q.heartbeat > 0) heartbeat = q.heartbeat;
  else if (q.heartbeat !== undefined && q.heartbeat !== false) {
    sendBadRequest(res, 'Invalid heartbeat value. Expecting a positive integer value.');
    return null;
  }
  let timeout = DEFAULT_TIMEOUT_MS;
  if (typeof q.timeout === 'number' && q.timeout >= 0) timeout = q.timeout;
  else if (q.timeout !== undefined) {
    sendBadRequest(res, 'Invalid timeout value. Expecting a non-negative integer value.');
    return null;
  }
  return { heartbeat, timeout };
}
const DEFAULT_HEARTBEAT_MS = 60000;

// Runs one PouchDB changes request, calling onChange per row.
// Returns {feed, done}: `done` resolves with PouchDB's completion info
// ({last_seq}) or rejects with its error; feed.cancel() stops it.
function runChanges(db, opts, onChange) {
  let feed;
  const done = new Promise((resolve, reject) => {
    feed = db.changes(Object.assign({ return_docs: false }, opts));
    feed.on('change', onChange);
    feed.on('complete', resolve);
    feed.on('error', reject);
  });
  // Cancelling makes PouchDB resolve `done`; nobody awaits a live feed.
  done.catch(() => {});
  return { feed, done };
}

// Number of changes after `since` (unfiltered), as CouchDB's `pending`.
async function countPending(db, since) {
  let n = 0;
  await runChanges(db, { since }, () => {
    n++;
  }).done;
  return n;
}

function parseSince(q) {
  let since = q.since;
  if (since === undefined || since === null || since === '') return 0;
  if (since === 'now') return 'now';
  if (typeof since === 'string' && /^\d+$/.test(since)) since = Number(since);
  if (typeof since === 'number' && Number.isInteger(since) && since >= 0) return since;
  return undefined;
}

// Returns {opts} (extra PouchDB options) or {error: [status, body]}.
async function buildFilter(db, q, body) {
  const name = q.filter;
  if (name === undefined || name === null || name === '') return { opts: {} };
  if (typeof name !== 'string') return { error: [400, badFilter()] };
  if (name === '_doc_ids') {
    const ids = body.doc_ids !== undefined ? body.doc_ids : q.doc_ids;
    if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) {
      return {
        error: [400, { error: 'bad_request', reason: '`doc_ids` filter parameter is not a list of doc ids.' }],
      };
    }
    const set = new Set(ids);
    return { opts: { filter: (doc) => set.has(doc._id) } };
  }
  if (name === '_selector') {
    const selector = body.selector !== undefined ? body.selector : q.selector;
    if (selector === null || typeof selector !== 'object' || Array.isArray(selector)) {
      return { error: [400, { error: 'bad_request', reason: 'Selector must be specified in POST payload' }] };
    }
    try {
      massageSelector(selector);
      matchesSelector({ _id: 'probe' }, selector);
    } catch (e) {
      return { error: [400, { error: 'bad_request', reason: 'Invalid selector: ' + e.message }] };
    }
    return { opts: { filter: (doc) => matchesSelector(doc, selector) } };
  }
  if (name === '_design') {
    return { opts: { filter: (doc) => typeof doc._id === 'string' && doc._id.startsWith('_design/') } };
  }
  if (name === '_view') {
    const view = q.view;
    const parts = typeof view === 'string' ? view.split('/') : [];
    if (parts.length !== 2 || !parts[0] || !parts[1]) {
      return { error: [400, { error: 'bad_request', reason: '`view` filter parameter is not provided.' }] };
    }
    const missing = await missingDdocFunction(db, parts[0], 'views', parts[1]);
    if (missing) return { error: ddocError(missing) };
    return { opts: { filter: '_view', view } };
  }
  const parts = name.split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1] || name.startsWith('_')) {
    return { error: [400, badFilter()] };
  }
  const missing = await missingDdocFunction(db, parts[0], 'filters', parts[1]);
  if (missing) return { error: ddocError(missing) };
  return { opts: { filter: name } };
}

function ddocError(body) {
  const status = body.status || 404;
  delete body.status;
  return [status, body];
}

function badFilter() {
  return { error: 'bad_request', reason: '`filter` parameter is not correctly formatted' };
}

// null when _design/ddoc has a compilable section[fn], else CouchDB's error body (404, or a
// `status: 400` compilation error).
async function missingDdocFunction(db, ddoc, section, fn) {
  let doc;
  try {
    doc = await db.get('_design/' + ddoc);
  } catch (e) {
    return { error: 'not_found', reason: e && e.reason === 'deleted' ? 'deleted' : 'missing' };
  }
  if (!doc[section]) return { error: 'not_found', reason: 'missing json key: ' + section };
  const entry = doc[section][fn];
  if (!entry || (section === 'views' && !entry.map)) {
    return { error: 'not_found', reason: 'missing json key: ' + fn };
  }
  // PouchDB compiles the function inside a callback, where a syntax error escapes as an
  // uncaught exception and the request hangs: check that it compiles first.
  const source = section === 'views' ? entry.map : entry;
  let compiled;
  try {
    compiled = vm.runInNewContext('(' + source + ')');
  } catch (e) {
    compiled = e;
  }
  if (typeof compiled !== 'function') {
    // (errors from the vm context are not `instanceof Error` here)
    const why = compiled && typeof compiled.message === 'string' ? compiled.message : 'not a function';
    return {
      status: 400,
      error: 'compilation_error',
      reason: 'Compilation of the ' + section.replace(/s$/, '') + ' function _design/' + ddoc + '/' + fn + ' failed: ' + why,
    };
  }
  return null;
}

async function handleChanges(req, res) {
  const db = req.db;
  const q = req.query; // values already JSON-parsed by express-pouchdb
  const body = req.method === 'POST' && req.body && typeof req.body === 'object' ? req.body : {};

  let feed = q.feed === undefined ? 'normal' : String(q.feed);
  if (!FEEDS.has(feed)) {
    return sendBadRequest(res, 'Supported `feed` types: normal, continuous, live, longpoll, eventsource');
  }
  if (feed === 'live') feed = 'continuous';

  // An EventSource reconnect resumes from the last `id:` it saw.
  if (feed === 'eventsource' && q.since === undefined && req.get('Last-Event-ID')) {
    const last = req.get('Last-Event-ID');
    q.since = /^\d+$/.test(last) ? Number(last) : last;
  }
  let since = parseSince(q);
  if (since === undefined) return sendBadRequest(res, "Malformed sequence supplied in 'since' parameter.");

  let limit = null;
  if (q.limit !== undefined) {
    if (typeof q.limit !== 'number' || !Number.isInteger(q.limit) || q.limit < 0) {
      return utils.sendJSON(res, 400, {
        error: 'query_parse_error',
        reason: 'Invalid value for integer: ' + JSON.stringify(String(q.limit)),
      });
    }
    limit = Math.max(1, q.limit);
  }

  const timers = feedTimers(q, res);
  if (!timers) return;
  const { heartbeat, timeout } = timers;

  const filter = await buildFilter(db, q, body);
  if (filter.error) return utils.sendJSON(res, filter.error[0], filter.error[1]);

  if (since === 'now') since = (await db.info()).update_seq;

  const base = Object.assign(
    {
      query_params: JSON.parse(JSON.stringify(q)),
      include_docs: q.include_docs === true,
      conflicts: q.conflicts === true,
      attachments: q.attachments === true,
      style: q.style === 'all_docs' ? 'all_docs' : undefined,
    },
    filter.opts,
  );
  if (!base.style) delete base.style;

  if (feed === 'normal') {
    const results = [];
    const opts = Object.assign({}, base, { since, descending: q.descending === true });
    if (limit !== null) opts.limit = limit;
    const info = await runChanges(db, opts, (ch) => results.push(ch)).done;
    const lastSeq = info.last_seq;
    let pending = 0;
    if (!opts.descending && limit !== null && results.length >= limit) {
      pending = await countPending(db, lastSeq);
    }
    return utils.sendJSON(res, 200, { results, last_seq: lastSeq, pending });
  }

  return streamFeed(req, res, db, { feed, since, limit, heartbeat, timeout, base });
}

// continuous / longpoll / eventsource: backlog, then a live tail.
function streamFeed(req, res, db, p) {
  const { feed, limit, heartbeat, base } = p;
  // CouchDB: a heartbeat keeps the feed open indefinitely (timeout ignored).
  const timeout = heartbeat !== null ? null : p.timeout;
  let lastSeq = p.since;
  let sent = 0;
  let first = true;
  let closed = false;
  let finishing = false;
  let oneShot = null;
  let live = null;
  let timeoutTimer = null;
  let heartbeatTimer = null;

  res.status(200);
  if (feed === 'eventsource') {
    res.setHeader('Content-Type', 'text/event-stream');
  } else {
    utils.setJsonOrPlaintext(res);
  }
  res.setHeader('Cache-Control', 'must-revalidate');
  if (req.socket) req.socket.setNoDelay(true);
  res.flushHeaders();
  if (feed === 'longpoll') res.write('{"results":[\n');

  function cleanup() {
    closed = true;
    if (timeoutTimer) clearTimeout(timeoutTimer);
    if (heartbeatTimer) clearInterval(heartbeatTimer);
    timeoutTimer = heartbeatTimer = null;
    if (live) live.feed.cancel();
    if (oneShot) oneShot.feed.cancel();
    live = oneShot = null;
  }
  res.on('close', cleanup);

  function writeRow(ch) {
    if (closed) return;
    if (feed === 'continuous') res.write(JSON.stringify(ch) + '\n');
    else if (feed === 'eventsource') res.write('data: ' + JSON.stringify(ch) + '\nid: ' + ch.seq + '\n\n');
    else {
      res.write((first ? '' : ',\n') + JSON.stringify(ch));
      first = false;
    }
    sent++;
    lastSeq = ch.seq;
  }
  const limitReached = () => limit !== null && sent >= limit;

  function fail(err) {
    if (closed) return;
    console.error('couch-peer: _changes feed error:', err);
    if (feed === 'continuous') {
      const e = err && err.name ? { error: err.name, reason: err.message } : { error: 'unknown_error', reason: String(err) };
      res.write(JSON.stringify(e) + '\n');
    }
    res.end();
    cleanup();
  }

  // End the feed: collect what arrived since the last row (so last_seq also
  // covers changes a filter skipped), then write the closing line.
  async function finish() {
    if (finishing || closed) return;
    finishing = true;
    if (timeoutTimer) clearTimeout(timeoutTimer);
    if (heartbeatTimer) clearInterval(heartbeatTimer);
    if (live) live.feed.cancel();
    live = null;
    try {
      if (!limitReached()) {
        const opts = Object.assign({}, base, { since: lastSeq });
        if (limit !== null) opts.limit = limit - sent;
        oneShot = runChanges(db, opts, writeRow);
        const info = await oneShot.done;
        oneShot = null;
        if (closed) return;
        if (limit === null || !limitReached()) lastSeq = maxSeq(lastSeq, info.last_seq);
      }
      const pending = await countPending(db, lastSeq);
      if (closed) return;
      if (feed === 'continuous') res.write(JSON.stringify({ last_seq: lastSeq, pending }) + '\n');
      else if (feed === 'longpoll') res.write('\n],\n"last_seq":' + JSON.stringify(lastSeq) + ',"pending":' + pending + '}\n');
      res.end();
      cleanup();
    } catch (e) {
      fail(e);
    }
  }

  function armTimeout() {
    if (timeout === null || closed || finishing) return;
    if (timeoutTimer) clearTimeout(timeoutTimer);
    timeoutTimer = setTimeout(finish, timeout);
  }

  async function run() {
    // 1. the backlog
    const opts = Object.assign({}, base, { since: lastSeq });
    if (limit !== null) opts.limit = limit;
    oneShot = runChanges(db, opts, writeRow);
    const info = await oneShot.done;
    oneShot = null;
    if (closed) return;
    if (!limitReached()) lastSeq = maxSeq(lastSeq, info.last_seq);
    if (limitReached() || (feed === 'longpoll' && sent > 0) || timeout === 0) return finish();

    // 2. the live tail
    if (heartbeat !== null) {
      heartbeatTimer = setInterval(() => {
        if (closed) return;
        res.write(feed === 'eventsource' ? 'event: heartbeat\ndata: \n\n' : '\n');
      }, heartbeat);
    }
    armTimeout();
    live = runChanges(db, Object.assign({}, base, { since: lastSeq, live: true }), (ch) => {
      if (closed || finishing) return;
      writeRow(ch);
      if (limitReached() || feed === 'longpoll') finish();
      else armTimeout();
    });
    // PouchDB completes a live feed by itself only when the db is destroyed under it.
    live.done.then(() => {
      if (!closed && !finishing) dbGone();
    }, fail);
  }

  // The database was deleted while the feed was open: end the feed (stock kept it open with
  // heartbeats forever), with CouchDB's 404 body as the last row on a continuous feed.
  function dbGone() {
    if (closed) return;
    finishing = true;
    if (feed === 'continuous') {
      res.write(JSON.stringify({ error: 'not_found', reason: 'Database does not exist.' }) + '\n');
    } else if (feed === 'longpoll') {
      res.write('\n],\n"last_seq":' + JSON.stringify(lastSeq) + ',"pending":0}\n');
    }
    res.end();
    cleanup();
  }

  run().catch(fail);
}

function maxSeq(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return Math.max(a, b);
  return b === undefined || b === null ? a : b;
}

// --- _db_updates --------------------------------------------------------------
// The server-wide feed of database events, kept in memory from the requests this process
// answers: `PUT /db` (created), `DELETE /db` (deleted), any other successful write under a
// database (updated). Each database appears once, with its latest event; seqs are opaque
// strings `N-INSTANCE`, and a `since` from another run of the server replays everything.
const dbUpdates = {
  instance: require('crypto').randomBytes(6).toString('hex'),
  counter: 0,
  // db name -> {db_name, type, seq, n}; Map order is event order (a db moves to the end).
  latest: new Map(),
  waiters: new Set(),
  seeded: false,
  seedWaiters: null,
  // The databases that exist when the feed is first asked for are reported as created.
  seed(PouchDB, done) {
    if (this.seeded) return done(null);
    if (this.seedWaiters) return this.seedWaiters.push(done);
    this.seedWaiters = [done];
    PouchDB.allDbs((err, names) => {
      const waiters = this.seedWaiters;
      this.seedWaiters = null;
      if (!err) {
        this.seeded = true;
        for (const name of names.sort()) {
          if (name !== 'pouch__auth_sessions__' && !this.latest.has(name)) this.record(name, 'created');
        }
      }
      for (const w of waiters) w(err || null);
    });
  },
  seqOf(n) {
    return n + '-' + this.instance;
  },
  record(name, type) {
    const n = ++this.counter;
    const row = { db_name: name, type, seq: this.seqOf(n), n };
    this.latest.delete(name);
    this.latest.set(name, row);
    for (const w of Array.from(this.waiters)) w(row);
  },
  // Rows after counter value `after`, in event order.
  rowsAfter(after) {
    const out = [];
    for (const row of this.latest.values()) if (row.n > after) out.push(row);
    return out;
  },
  // `since` as a counter value; undefined when malformed.
  parseSince(since) {
    if (since === undefined || since === null || since === '' || since === 0 || since === '0') return 0;
    if (since === 'now') return this.counter;
    const m = /^(\d+)-([0-9a-z]+)$/.exec(String(since));
    if (!m) return undefined;
    return m[2] === this.instance ? Math.min(Number(m[1]), this.counter) : 0;
  },
};

// Database paths whose POST only reads.
const READ_ONLY_POSTS = new Set(['_all_docs', '_find', '_changes', '_bulk_get', '_revs_diff', '_explain', '_design_docs']);

// Notes a finished request in `dbUpdates` when it created, deleted or wrote into a database.
function noteDbEvent(req, res) {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return;
  res.on('finish', () => {
    if (res.statusCode < 200 || res.statusCode >= 300) return;
    const pathname = (req.url || '').split('?')[0];
    const parts = pathname.split('/').filter((p) => p !== '');
    if (parts.length === 0) return;
    let name;
    try {
      name = decodeURIComponent(parts[0]);
    } catch (e) {
      return;
    }
    if (!validDbName(name)) return;
    if (parts.length === 1) {
      if (req.method === 'PUT') dbUpdates.record(name, 'created');
      else if (req.method === 'DELETE') dbUpdates.record(name, 'deleted');
      else if (req.method === 'POST') dbUpdates.record(name, 'updated');
      return;
    }
    const sub = parts[1];
    if (sub === '_local' || sub === '_compact' || sub === '_view_cleanup' || sub === '_ensure_full_commit') return;
    if (req.method === 'POST' && (READ_ONLY_POSTS.has(sub) || parts.indexOf('_view') !== -1)) return;
    dbUpdates.record(name, 'updated');
  });
}

// GET /_db_updates?feed=normal|longpoll|continuous&since=&timeout=&heartbeat=
function handleDbUpdates(req, res) {
  const q = req.query;
  const feed = q.feed === undefined ? 'normal' : String(q.feed);
  if (!['normal', 'longpoll', 'continuous'].includes(feed)) {
    return sendBadRequest(res, 'Supported `feed` types: normal, continuous, longpoll');
  }
  const since = dbUpdates.parseSince(q.since);
  if (since === undefined) return sendBadRequest(res, "Malformed sequence supplied in 'since' parameter.");
  const timers = feedTimers(q, res);
  if (!timers) return;
  const { heartbeat, timeout } = timers;
  const strip = (row) => ({ db_name: row.db_name, type: row.type, seq: row.seq });
  const backlog = dbUpdates.rowsAfter(since);
  let last = backlog.length ? backlog[backlog.length - 1].n : Math.max(since, 0);

  if (feed === 'normal' || (feed === 'longpoll' && backlog.length > 0)) {
    const lastSeq = backlog.length ? backlog[backlog.length - 1].seq : dbUpdates.seqOf(last);
    return utils.sendJSON(res, 200, { results: backlog.map(strip), last_seq: lastSeq });
  }

  res.status(200);
  utils.setJsonOrPlaintext(res);
  res.setHeader('Cache-Control', 'must-revalidate');
  if (req.socket) req.socket.setNoDelay(true);
  res.flushHeaders();
  let closed = false;
  let timer = null;
  let beat = null;
  const waiter = (row) => {
    if (closed) return;
    last = row.n;
    if (feed === 'longpoll') {
      res.write('{"results":[' + JSON.stringify(strip(row)) + '],"last_seq":' + JSON.stringify(row.seq) + '}\n');
      return end(false);
    }
    res.write(JSON.stringify(strip(row)) + '\n');
    arm();
  };
  function end(writeLast) {
    if (closed) return;
    if (writeLast) {
      const lastSeq = dbUpdates.seqOf(last);
      if (feed === 'longpoll') res.write('{"results":[],"last_seq":' + JSON.stringify(lastSeq) + '}\n');
      else res.write(JSON.stringify({ last_seq: lastSeq }) + '\n');
    }
    res.end();
    cleanup();
  }
  function cleanup() {
    closed = true;
    dbUpdates.waiters.delete(waiter);
    if (timer) clearTimeout(timer);
    if (beat) clearInterval(beat);
    timer = beat = null;
  }
  // As on `_changes`: a heartbeat keeps the feed open; otherwise `timeout` ends it.
  function arm() {
    if (heartbeat !== null || closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => end(true), timeout);
  }
  res.on('close', cleanup);
  for (const row of backlog) res.write(JSON.stringify(strip(row)) + '\n');
  dbUpdates.waiters.add(waiter);
  if (heartbeat !== null) beat = setInterval(() => !closed && res.write('\n'), heartbeat);
  arm();
}

// ---------------------------------------------------------------------------
// Build PouchDB and the express-pouchdb app.
const expressPouchDB = require('express-pouchdb');
let PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-mapreduce'))
  .plugin(require('pouchdb-replication'));
let pouchOpts;
if (inMemory) {
  PouchDB.plugin(require('pouchdb-adapter-memory'));
  pouchOpts = { adapter: 'memory' };
} else {
  PouchDB.plugin(require('pouchdb-adapter-leveldb'));
  // `db.getDiskSize()` for `GET /db` only: see the `disk-size` exclusion below.
  PouchDB.plugin(require('pouchdb-size'));
  pouchOpts = { adapter: 'leveldb', prefix: dataDir + path.sep };
}
PouchDB = PouchDB.defaults(pouchOpts);
dbNames.watch(PouchDB);

const app = expressPouchDB(PouchDB, {
  mode: 'fullCouchDB',
  // CouchDB does not gzip _changes; couch_rs always asks for gzip, and the
  // compression middleware holds a live feed in its zlib buffer.
  // express-pouchdb's `disk-size` wraps every db.info() to walk the database's directory, and
  // every request calls info() (the session check reads `_users`' info; `_changes` and `GET /db`
  // their db's): about 1 ms of each request on leveldb, for a figure only `GET /db` answers.
  // So it is left out, and `GET /db` measures the directory itself (`dbInfo`); in memory there
  // is no directory and the sizes read 0.
  overrideMode: { exclude: ['compression', 'disk-size'] },
  inMemoryConfig: inMemory,
  configPath: inMemory ? undefined : path.join(dataDir, 'config.json'),
  logPath: inMemory ? '/dev/null' : path.join(dataDir, 'log.txt'),
});

function listen() {
  dbNames.load(PouchDB, (err) => {
    if (err) {
      console.error('couch-peer: cannot list the databases:', err);
      process.exit(1);
    }
    serve();
  });
}

function serve() {
  const server = http.createServer((req, res) => {
    noteDbEvent(req, res);
    app(req, res);
  });
  // Live feeds may run for minutes: no per-request time limit.
  server.requestTimeout = 0;
  server.timeout = 0;
  server.on('error', (err) => {
    console.error('couch-peer: cannot listen on 127.0.0.1:' + port + ': ' + err.message);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write('couch-peer listening on http://127.0.0.1:' + server.address().port + '\n');
  });
}

if (admin !== null) {
  const i = admin.indexOf(':');
  app.couchConfig.set('admins', admin.slice(0, i), admin.slice(i + 1), (err) => {
    if (err) {
      console.error('couch-peer: cannot set admin:', err);
      process.exit(1);
    }
    listen();
  });
} else {
  listen();
}
