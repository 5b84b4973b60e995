/*
 * aforo-embed.js — the Aforo embed SDK, served by the SSE gateway at /sdk/aforo-embed.js.
 * Plain modern JavaScript, no build step, no dependencies. Reference: docs/embed-sdk.md.
 *
 * In a widget (the page that calls AforoEmbed.mount):
 *   - one bridge exchange and one SSE stream per tenant, shared by every mounted widget of the page
 *     (a promise-coalescing map keyed by the tenant slug); the stream lingers `lingerMs` after the
 *     last widget unmounts, then closes and its session is revoked;
 *   - the session lifecycle init → getSessionJwt → refresh → destroy; while the tenant's connection
 *     is up the session JWT is refreshed on a timer at ~80% of its lifetime, so neither a reconnect
 *     nor the final revoke ever holds an expired token; reconnects use exponential backoff (capped
 *     at `backoffMaxMs`), resuming with the last event id;
 *   - every event of a tenant is handed to the widget.on handlers of that tenant's widgets and to the
 *     page-wide AforoEmbed.on handlers and, inside an iframe, posted to the host page with
 *     window.parent.postMessage(message, parentOrigin) — never '*';
 *   - messages from the host are accepted only from window.parent, with an allowlisted type, and not
 *     as a duplicate of the same message within 100 ms; each tenant's widgets get them only when the
 *     sender's origin is an allowed domain of that tenant's embed key.
 * In a host page: AforoEmbed.configure({widgetOrigins: [...]}) and AforoEmbed.on(type, handler)
 * receive the widgets' messages, exactly as a raw window.addEventListener('message') would.
 *
 * postMessage carries UI state only. Signed webhooks are the source of truth (see the docs).
 */
(function (global) {
  'use strict';

  var MESSAGE_VERSION = '1';
  var WIDGET_EVENT_TYPES = Object.freeze([
    'aforo.invoice.created',
    'aforo.invoice.paid',
    'aforo.subscription.status_changed',
    'aforo.payment.failed',
    'aforo.usage.threshold_breached',
  ]);
  var INBOUND_TYPES = Object.freeze([
    'aforo:checkout-completed',
    'aforo:checkout-cancelled',
    'aforo:invoice-paid',
    'aforo:refresh-requested',
    'aforo:payment-challenge-completed',
  ]);
  var OUTBOUND_TYPE = /^aforo\.[a-z_]+\.[a-z_]+$/;
  var DEDUP_WINDOW_MS = 100;
  var SEEN_EVENT_IDS = 500;
  var DEFAULTS = Object.freeze({
    lingerMs: 30000,
    backoffBaseMs: 1000,
    backoffMaxMs: 60000,
    refreshBeforeExpiryRatio: 0.2,
    widgetOrigins: [],
  });

  // A token's `iat` is whole seconds, so it may predate the request that obtained it by up to this much.
  var ISSUED_AT_ROUNDING_MS = 1000;

  var options = Object.assign({}, DEFAULTS);
  var pageHandlers = new Map(); // AforoEmbed.on: type → Set of handlers, page-wide
  var connections = new Map(); // tenant slug → Promise<TenantConnection>
  var liveConnections = new Set(); // the TenantConnections of this page that are not closed
  var recentInbound = new Map(); // dedup key → time it was last accepted

  function log(level, message, detail) {
    var sink = global.console && global.console[level];
    if (sink) sink.call(global.console, '[aforo-embed] ' + message, detail === undefined ? '' : detail);
  }

  function originOf(url) {
    try {
      return new URL(url).origin;
    } catch (error) {
      return null;
    }
  }

  /** Exponential backoff from `backoffBaseMs`, capped at `backoffMaxMs`, jittered between half and full. */
  function backoffDelay(attempt) {
    var ceiling = Math.min(options.backoffMaxMs, options.backoffBaseMs * Math.pow(2, attempt));
    return ceiling / 2 + Math.random() * (ceiling / 2); // jitter: clients of a restarted replica spread out
  }

  // ------------------------------------------------------------------ handlers

  /** Register `handler` for `type` in `registry` (a Map type → Set); an unsubscribe function. */
  function addHandler(registry, type, handler, caller) {
    if (typeof type !== 'string' || typeof handler !== 'function') {
      throw new TypeError(caller + '(type, handler): a type string and a function are required');
    }
    if (!registry.has(type)) registry.set(type, new Set());
    var entry = { handler: handler };
    registry.get(type).add(entry);
    return function unsubscribe() {
      var set = registry.get(type);
      if (!set) return;
      set.delete(entry);
      if (set.size === 0) registry.delete(type);
    };
  }

  function dispatch(registry, type, message, context) {
    var set = registry.get(type);
    if (!set) return;
    Array.from(set).forEach(function (entry) {
      try {
        entry.handler(message, context);
      } catch (error) {
        log('error', 'a handler for ' + type + ' threw', error);
      }
    });
  }

  function onPage(type, handler) {
    return addHandler(pageHandlers, type, handler, 'AforoEmbed.on');
  }

  // ------------------------------------------------------------------ inbound postMessage

  /**
   * The tenant connections a message from the host page is for: it must come from window.parent
   * (not a sibling frame, a popup or another window that happens to share an allowed origin), have
   * an allowlisted type, come from an allowed origin of the tenant's embed key, and not repeat the
   * same message within 100 ms. An empty list when the message is ignored.
   */
  function inboundRecipients(event, now) {
    var data = event.data;
    if (event.source !== global.parent) return [];
    if (!data || typeof data !== 'object' || INBOUND_TYPES.indexOf(data.type) === -1) return [];
    var recipients = Array.from(liveConnections).filter(function (connection) {
      return connection.session.allowedOrigins.indexOf(event.origin) !== -1;
    });
    if (recipients.length === 0) return [];
    var key;
    try {
      key = event.origin + '\u0000' + data.type + '\u0000' + JSON.stringify(data.payload === undefined ? null : data.payload);
    } catch (error) {
      return []; // a payload that cannot be serialised is not a message of this protocol
    }
    var last = recentInbound.get(key);
    if (last !== undefined && now - last < DEDUP_WINDOW_MS) return [];
    recentInbound.set(key, now);
    if (recentInbound.size > 256) {
      recentInbound.forEach(function (at, stale) {
        if (now - at >= DEDUP_WINDOW_MS) recentInbound.delete(stale);
      });
    }
    return recipients;
  }

  /** In a host page: a widget's outbound envelope from a configured widget origin. */
  function acceptFromWidget(event) {
    var data = event.data;
    return (
      options.widgetOrigins.indexOf(event.origin) !== -1 &&
      data && typeof data === 'object' && typeof data.type === 'string' &&
      OUTBOUND_TYPE.test(data.type) && data.version === MESSAGE_VERSION
    );
  }

  global.addEventListener('message', function (event) {
    if (acceptFromWidget(event)) {
      dispatch(pageHandlers, event.data.type, event.data);
      return;
    }
    var recipients = inboundRecipients(event, global.performance.now());
    if (recipients.length === 0) return;
    var type = event.data.type;
    var message = { type: type, payload: event.data.payload, origin: event.origin };
    recipients.forEach(function (connection) {
      dispatch(connection.handlers, type, message, { tenant: connection.tenant });
    });
    // Page-wide handlers belong to the page, which embeds every one of these tenants: once is enough.
    dispatch(pageHandlers, type, message, {
      tenants: recipients.map(function (connection) {
        return connection.tenant;
      }),
    });
  });

  // ------------------------------------------------------------------ the session

  var SESSION_PATH = '/v1/embed/session';
  var REFRESH_PATH = '/v1/embed/session/refresh';
  var REVOKE_PATH = '/v1/embed/session/revoke';

  function EmbedError(status, body) {
    var error = (body && body.error) || {};
    var failure = new Error('aforo-embed: ' + (error.message || 'HTTP ' + status));
    failure.status = status;
    failure.code = error.code || 'http_' + status;
    return failure;
  }

  /** A JWT's claims, read without verifying (the gateway verifies; the SDK only needs iat/exp). */
  function tokenClaims(token) {
    try {
      var part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(global.atob(part + '==='.slice((part.length + 3) % 4)));
    } catch (error) {
      return null;
    }
  }

  /**
   * init → getSessionJwt → refresh → destroy, against the gateway's /v1/embed/session routes.
   * keepFresh() refreshes the session JWT on a timer at (1 - refreshBeforeExpiryRatio) of its
   * lifetime: the gateway refreshes only unexpired tokens, and revoking needs one too.
   */
  function EmbedSession(config) {
    this.gatewayUrl = config.gatewayUrl.replace(/\/+$/, '');
    this.embedKey = config.embedKey;
    this.getBridgeToken = config.getBridgeToken;
    this.token = null;
    this.issuedAt = 0; // local clock, conservative: the token was issued no earlier than this
    this.expiresAt = 0; // local clock, conservative: the token expires no earlier than this
    this.allowedOrigins = [];
    this.pending = null; // one init or refresh at a time
    this.destroyed = false;
    this.keepingFresh = false;
    this.refreshTimer = null;
    this.refreshFailures = 0;
  }

  EmbedSession.prototype.post = function (path, body, token) {
    var headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    return global
      .fetch(this.gatewayUrl + path, {
        method: 'POST',
        mode: 'cors',
        credentials: 'omit',
        headers: headers,
        body: body ? JSON.stringify(body) : undefined,
        keepalive: path === REVOKE_PATH,
      })
      .then(function (response) {
        if (response.status === 204) return null;
        return response.json().then(
          function (json) {
            if (!response.ok) throw EmbedError(response.status, json);
            return json;
          },
          function () {
            throw EmbedError(response.status, null);
          }
        );
      });
  };

  /** Post `path` and return the gateway's answer with `requestedAt`, the local time the request left. */
  EmbedSession.prototype.request = function (path, body, token) {
    var requestedAt = Date.now();
    return this.post(path, body, token).then(function (answer) {
      return { answer: answer, requestedAt: requestedAt };
    });
  };

  /**
   * Take a new session JWT. Its lifetime is `exp - iat` from the token (both on the gateway's clock),
   * counted from when the request left, minus the rounding of `iat`: a browser clock that is off does
   * not move the refresh. The answer's `expiresAt` is the fallback if the token cannot be read.
   */
  EmbedSession.prototype.accept = function (result) {
    var answer = result.answer;
    var claims = tokenClaims(answer.sessionToken);
    var lifetime =
      claims && typeof claims.exp === 'number' && typeof claims.iat === 'number' && claims.exp > claims.iat
        ? (claims.exp - claims.iat) * 1000 - ISSUED_AT_ROUNDING_MS
        : Date.parse(answer.expiresAt) - Date.now();
    this.token = answer.sessionToken;
    this.issuedAt = result.requestedAt;
    this.expiresAt = result.requestedAt + Math.max(0, lifetime);
    this.allowedOrigins = answer.allowedOrigins || [];
    this.refreshFailures = 0;
    this.scheduleRefresh();
    return this.token;
  };

  EmbedSession.prototype.once = function (work) {
    var self = this;
    if (!this.pending) {
      this.pending = Promise.resolve()
        .then(work)
        .finally(function () {
          self.pending = null;
        });
    }
    return this.pending;
  };

  /** The bridge exchange itself (callers hold `once`). */
  EmbedSession.prototype.exchange = function () {
    var self = this;
    return Promise.resolve(self.getBridgeToken()).then(function (bridgeToken) {
      return self
        .request(SESSION_PATH, { bridgeToken: String(bridgeToken).trim(), embedKey: self.embedKey })
        .then(self.accept.bind(self));
    });
  };

  /** Exchange a bridge token (from the integrator's server) and the embed key for a session JWT. */
  EmbedSession.prototype.init = function () {
    this.destroyed = false;
    return this.once(this.exchange.bind(this));
  };

  /**
   * A new session JWT for the same session. A 401 (the session was revoked or ended, or the token
   * expired before it could be refreshed) starts over with a new bridge exchange, as init() does.
   */
  EmbedSession.prototype.refresh = function () {
    var self = this;
    return this.once(function () {
      if (!self.token) return self.destroyed ? null : self.exchange();
      return self.request(REFRESH_PATH, null, self.token).then(self.accept.bind(self), function (error) {
        if (error.status !== 401) throw error;
        self.token = null;
        log('info', 'the session cannot be refreshed (' + error.code + '); exchanging a new bridge token');
        return self.destroyed ? null : self.exchange();
      });
    });
  };

  /** Whether the current token is within `refreshBeforeExpiryRatio` of its lifetime from expiring. */
  EmbedSession.prototype.needsRefresh = function () {
    var lifetime = this.expiresAt - this.issuedAt;
    return Date.now() >= this.expiresAt - lifetime * options.refreshBeforeExpiryRatio;
  };

  /** The current session JWT, refreshed first when it is close to its expiry. */
  EmbedSession.prototype.getSessionJwt = function () {
    if (!this.token) return this.init();
    if (this.needsRefresh()) return this.refresh();
    return Promise.resolve(this.token);
  };

  /** Refresh on a timer until stopKeepingFresh() or destroy(): a long-lived page never holds a stale token. */
  EmbedSession.prototype.keepFresh = function () {
    this.keepingFresh = true;
    this.scheduleRefresh();
  };

  EmbedSession.prototype.stopKeepingFresh = function () {
    this.keepingFresh = false;
    if (this.refreshTimer !== null) global.clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  };

  /** The next timed refresh: when the token needs one, or after a backoff when the last one failed. */
  EmbedSession.prototype.scheduleRefresh = function (delay) {
    var self = this;
    if (this.refreshTimer !== null) global.clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (!this.keepingFresh || this.destroyed) return;
    if (delay === undefined) {
      if (!this.token) return; // nothing to keep fresh yet
      var lifetime = this.expiresAt - this.issuedAt;
      delay = Math.max(0, this.expiresAt - lifetime * options.refreshBeforeExpiryRatio - Date.now());
    }
    this.refreshTimer = global.setTimeout(function () {
      self.refreshTimer = null;
      self.refresh().catch(function (error) {
        // A network failure, a 5xx or a failed new exchange: try again soon. Once the token has
        // expired, the next attempt gets 401 and falls back to a new exchange.
        log('warn', 'the session refresh failed; retrying', error && error.code);
        self.scheduleRefresh(backoffDelay(self.refreshFailures));
        self.refreshFailures = Math.min(self.refreshFailures + 1, 30);
      });
    }, delay);
  };

  /**
   * Revoke the session at the gateway (best effort: the page may be going away). The revoke needs an
   * unexpired token, so one close to its expiry is refreshed first. A session whose token can no
   * longer be refreshed (401) cannot be used by anyone any more and is left to expire.
   */
  EmbedSession.prototype.destroy = function () {
    var self = this;
    this.destroyed = true;
    this.stopKeepingFresh();
    var settled = this.pending ? this.pending.catch(function () {}) : Promise.resolve();
    return settled
      .then(function () {
        var token = self.token;
        if (!token || !self.needsRefresh()) return token;
        return self.post(REFRESH_PATH, null, token).then(
          function (answer) {
            return answer.sessionToken;
          },
          function (error) {
            return error.status === 401 ? null : token;
          }
        );
      })
      .then(function (token) {
        self.token = null;
        if (token) return self.post(REVOKE_PATH, null, token);
        return null;
      })
      .then(
        function () {},
        function (error) {
          log('warn', 'the session could not be revoked', error && error.code);
        }
      );
  };

  // ------------------------------------------------------------------ one stream per tenant

  function TenantConnection(tenant, config) {
    this.tenant = tenant;
    this.session = new EmbedSession(config);
    this.handlers = new Map(); // widget.on of this tenant's widgets: type → Set of handlers
    this.source = null;
    this.widgets = 0;
    this.lastEventId = null;
    this.seen = [];
    this.attempt = 0;
    this.failedBeforeOpen = 0;
    this.retryTimer = null;
    this.lingerTimer = null;
    this.closed = false;
    this.parentOrigin = null;
    this.configuredParentOrigin = config.parentOrigin || null;
  }

  TenantConnection.prototype.start = function () {
    var self = this;
    return this.session.init().then(function () {
      if (self.closed) return null;
      self.session.keepFresh();
      self.parentOrigin = self.resolveParentOrigin();
      return self.connect();
    });
  };

  /** The host page's origin, and only if the embed key allows it: never '*'. */
  TenantConnection.prototype.resolveParentOrigin = function () {
    if (global.parent === global) return null;
    var ancestors = global.location.ancestorOrigins;
    var origin =
      this.configuredParentOrigin ||
      (ancestors && ancestors.length ? ancestors[0] : null) ||
      originOf(global.document.referrer);
    if (!origin || this.session.allowedOrigins.indexOf(origin) === -1) {
      log('warn', 'the host page origin is not an allowed domain of the embed key; not posting to it', origin);
      return null;
    }
    return origin;
  };

  TenantConnection.prototype.connect = function () {
    var self = this;
    if (this.closed) return Promise.resolve();
    var refreshing = this.failedBeforeOpen > 0 ? this.session.refresh() : this.session.getSessionJwt();
    return refreshing.then(
      function (token) {
        if (self.closed) return;
        var url = self.session.gatewayUrl + '/v1/embed/stream?access_token=' + encodeURIComponent(token);
        if (self.lastEventId) url += '&lastEventId=' + encodeURIComponent(self.lastEventId);
        var source = new global.EventSource(url);
        self.source = source;
        var opened = false;
        source.onopen = function () {
          opened = true;
          self.attempt = 0;
          self.failedBeforeOpen = 0;
        };
        source.onerror = function () {
          // The SDK reconnects itself (EventSource's own retry would reuse a stale token and skip backoff).
          source.close();
          if (self.source !== source) return;
          self.source = null;
          if (!opened) self.failedBeforeOpen += 1;
          self.scheduleReconnect();
        };
        WIDGET_EVENT_TYPES.forEach(function (type) {
          source.addEventListener(type, function (event) {
            self.deliver(event);
          });
        });
      },
      function (error) {
        log('warn', 'no session for tenant ' + self.tenant + '; retrying', error && error.code);
        self.scheduleReconnect();
      }
    );
  };

  TenantConnection.prototype.scheduleReconnect = function () {
    var self = this;
    if (this.closed || this.retryTimer !== null) return;
    var delay = backoffDelay(this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    this.retryTimer = global.setTimeout(function () {
      self.retryTimer = null;
      self.connect();
    }, delay);
  };

  TenantConnection.prototype.deliver = function (event) {
    var id = event.lastEventId;
    if (id) {
      if (this.seen.indexOf(id) !== -1) return; // replayed by a replica that was a moment behind
      this.seen.push(id);
      if (this.seen.length > SEEN_EVENT_IDS) this.seen.shift();
      this.lastEventId = id;
    }
    var message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      log('warn', 'an event that is not JSON was ignored');
      return;
    }
    // This tenant's widgets only: another tenant's widgets on the page never see these events.
    dispatch(this.handlers, message.type, message, { tenant: this.tenant });
    dispatch(pageHandlers, message.type, message, { tenant: this.tenant });
    if (this.parentOrigin) global.parent.postMessage(message, this.parentOrigin);
  };

  TenantConnection.prototype.acquire = function () {
    this.widgets += 1;
    if (this.lingerTimer !== null) {
      global.clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
  };

  TenantConnection.prototype.release = function () {
    var self = this;
    this.widgets = Math.max(0, this.widgets - 1);
    if (this.widgets === 0 && this.lingerTimer === null) {
      this.lingerTimer = global.setTimeout(function () {
        self.lingerTimer = null;
        if (self.widgets === 0) self.close();
      }, options.lingerMs);
    }
  };

  TenantConnection.prototype.close = function () {
    this.closed = true;
    liveConnections.delete(this);
    if (this.retryTimer !== null) global.clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    if (connections.get(this.tenant) === this.promise) connections.delete(this.tenant);
    return this.session.destroy();
  };

  function connectionFor(config) {
    var tenant = config.tenant;
    var existing = connections.get(tenant);
    if (existing) return existing;
    var connection = new TenantConnection(tenant, config);
    liveConnections.add(connection);
    var promise = connection.start().then(function () {
      return connection;
    });
    connection.promise = promise;
    connections.set(tenant, promise);
    promise.catch(function () {
      if (connections.get(tenant) === promise) connections.delete(tenant);
      connection.closed = true;
      liveConnections.delete(connection);
      connection.session.stopKeepingFresh();
    });
    return promise;
  }

  // ------------------------------------------------------------------ the public API

  function requireConfig(config) {
    ['tenant', 'gatewayUrl', 'embedKey'].forEach(function (name) {
      if (!config || typeof config[name] !== 'string' || !config[name]) {
        throw new TypeError('AforoEmbed.mount: ' + name + ' is required');
      }
    });
    if (typeof config.getBridgeToken !== 'function') {
      throw new TypeError('AforoEmbed.mount: getBridgeToken (a function returning the bridge token) is required');
    }
  }

  /** Mount a widget; resolves to {on(type, handler) → unsubscribe, unmount()}. */
  function mount(config) {
    requireConfig(config);
    return connectionFor(config).then(function (connection) {
      if (connection.closed) return mount(config); // it lingered out while this mount waited
      connection.acquire();
      var own = [];
      var mounted = true;
      return {
        tenant: config.tenant,
        on: function (type, handler) {
          var unsubscribe = addHandler(connection.handlers, type, handler, 'widget.on');
          own.push(unsubscribe);
          return unsubscribe;
        },
        unmount: function () {
          if (!mounted) return;
          mounted = false;
          own.forEach(function (unsubscribe) {
            unsubscribe();
          });
          connection.release();
        },
      };
    });
  }

  function configure(settings) {
    Object.keys(settings || {}).forEach(function (name) {
      if (!(name in DEFAULTS)) throw new TypeError('AforoEmbed.configure: unknown setting ' + name);
    });
    options = Object.assign({}, options, settings);
    options.widgetOrigins = (options.widgetOrigins || []).map(function (origin) {
      return originOf(origin) || origin;
    });
    return Object.assign({}, options);
  }

  /** What the SDK holds, per tenant (for diagnostics and tests; not a contract). */
  function state() {
    var tenants = {};
    return Promise.all(
      Array.from(connections.entries()).map(function (entry) {
        return entry[1].then(
          function (connection) {
            tenants[entry[0]] = {
              widgets: connection.widgets,
              streaming: connection.source !== null && connection.source.readyState === 1,
              lastEventId: connection.lastEventId,
              lingering: connection.lingerTimer !== null,
            };
          },
          function () {}
        );
      })
    ).then(function () {
      return tenants;
    });
  }

  global.AforoEmbed = Object.freeze({
    version: MESSAGE_VERSION,
    eventTypes: WIDGET_EVENT_TYPES,
    inboundTypes: INBOUND_TYPES,
    mount: mount,
    on: onPage,
    configure: configure,
    state: state,
    EmbedSession: EmbedSession,
  });
})(window);
