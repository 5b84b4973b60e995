/*
 * aforo-embed.js — the Aforo embed SDK, served by the SSE gateway at /sdk/aforo-embed.js.
 * Plain modern JavaScript, no build step, no dependencies. Reference: docs/embed-sdk.md.
 *
 * In a widget (the page that calls AforoEmbed.mount):
 *   - one bridge exchange and one SSE stream per tenant, shared by every mounted widget of the page
 *     (a promise-coalescing map keyed by the tenant slug); the stream lingers `lingerMs` after the
 *     last widget unmounts, then closes and its session is revoked;
 *   - the session lifecycle init → getSessionJwt → refresh → destroy, reconnects with exponential
 *     backoff (capped at `backoffMaxMs`), resuming with the last event id;
 *   - every event is handed to AforoEmbed.on / widget.on handlers and, inside an iframe, posted to
 *     the host page with window.parent.postMessage(message, parentOrigin) — never '*';
 *   - messages from the host are accepted only with an allowlisted type, from an allowed origin,
 *     and not as a duplicate of the same message within 100 ms.
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

  var options = Object.assign({}, DEFAULTS);
  var handlers = new Map(); // type → Set of handlers
  var connections = new Map(); // tenant slug → Promise<TenantConnection>
  var recentInbound = new Map(); // dedup key → time it was last accepted
  var trustedOrigins = new Set(); // embed keys' allowed origins, from the sessions of this page

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

  // ------------------------------------------------------------------ handlers

  function addHandler(type, handler) {
    if (typeof type !== 'string' || typeof handler !== 'function') {
      throw new TypeError('AforoEmbed.on(type, handler): a type string and a function are required');
    }
    if (!handlers.has(type)) handlers.set(type, new Set());
    var entry = { handler: handler };
    handlers.get(type).add(entry);
    return function unsubscribe() {
      var set = handlers.get(type);
      if (set) set.delete(entry);
    };
  }

  function dispatch(type, message) {
    var set = handlers.get(type);
    if (!set) return;
    Array.from(set).forEach(function (entry) {
      try {
        entry.handler(message);
      } catch (error) {
        log('error', 'a handler for ' + type + ' threw', error);
      }
    });
  }

  // ------------------------------------------------------------------ inbound postMessage

  /** Whether a message from the host page is accepted: allowlisted type, allowed origin, not a repeat. */
  function acceptInbound(event, now) {
    var data = event.data;
    if (!data || typeof data !== 'object' || INBOUND_TYPES.indexOf(data.type) === -1) return false;
    if (!trustedOrigins.has(event.origin)) return false;
    var key;
    try {
      key = event.origin + '\u0000' + data.type + '\u0000' + JSON.stringify(data.payload === undefined ? null : data.payload);
    } catch (error) {
      return false; // a payload that cannot be serialised is not a message of this protocol
    }
    var last = recentInbound.get(key);
    if (last !== undefined && now - last < DEDUP_WINDOW_MS) return false;
    recentInbound.set(key, now);
    if (recentInbound.size > 256) {
      recentInbound.forEach(function (at, stale) {
        if (now - at >= DEDUP_WINDOW_MS) recentInbound.delete(stale);
      });
    }
    return true;
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
      dispatch(event.data.type, event.data);
    } else if (acceptInbound(event, global.performance.now())) {
      dispatch(event.data.type, { type: event.data.type, payload: event.data.payload, origin: event.origin });
    }
  });

  // ------------------------------------------------------------------ the session

  function EmbedError(status, body) {
    var error = (body && body.error) || {};
    var failure = new Error('aforo-embed: ' + (error.message || 'HTTP ' + status));
    failure.status = status;
    failure.code = error.code || 'http_' + status;
    return failure;
  }

  /** init → getSessionJwt → refresh → destroy, against the gateway's /v1/embed/session routes. */
  function EmbedSession(config) {
    this.gatewayUrl = config.gatewayUrl.replace(/\/+$/, '');
    this.embedKey = config.embedKey;
    this.getBridgeToken = config.getBridgeToken;
    this.token = null;
    this.issuedAt = 0;
    this.expiresAt = 0;
    this.allowedOrigins = [];
    this.pending = null; // one init or refresh at a time
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
        keepalive: path.slice(-7) === '/revoke',
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

  EmbedSession.prototype.accept = function (answer) {
    this.token = answer.sessionToken;
    this.issuedAt = Date.now();
    this.expiresAt = Date.parse(answer.expiresAt);
    this.allowedOrigins = answer.allowedOrigins || [];
    this.allowedOrigins.forEach(function (origin) {
      trustedOrigins.add(origin);
    });
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

  /** Exchange a bridge token (from the integrator's server) and the embed key for a session JWT. */
  EmbedSession.prototype.init = function () {
    var self = this;
    return this.once(function () {
      return Promise.resolve(self.getBridgeToken()).then(function (bridgeToken) {
        return self
          .post('/v1/embed/session', { bridgeToken: String(bridgeToken).trim(), embedKey: self.embedKey })
          .then(self.accept.bind(self));
      });
    });
  };

  /** A new session JWT for the same session; a revoked or ended session starts over with init(). */
  EmbedSession.prototype.refresh = function () {
    var self = this;
    if (!this.token) return this.init();
    return this.once(function () {
      return self.post('/v1/embed/session/refresh', null, self.token).then(self.accept.bind(self), function (error) {
        if (error.status === 401) {
          self.token = null;
          return null;
        }
        throw error;
      });
    }).then(function (token) {
      return token || self.init();
    });
  };

  /** The current session JWT, refreshed first when it is close to its expiry. */
  EmbedSession.prototype.getSessionJwt = function () {
    if (!this.token) return this.init();
    var lifetime = this.expiresAt - this.issuedAt;
    if (Date.now() > this.expiresAt - lifetime * options.refreshBeforeExpiryRatio) return this.refresh();
    return Promise.resolve(this.token);
  };

  /** Revoke the session at the gateway (best effort: the page may be going away). */
  EmbedSession.prototype.destroy = function () {
    var token = this.token;
    this.token = null;
    if (!token) return Promise.resolve();
    return this.post('/v1/embed/session/revoke', null, token).catch(function () {});
  };

  // ------------------------------------------------------------------ one stream per tenant

  function TenantConnection(tenant, config) {
    this.tenant = tenant;
    this.session = new EmbedSession(config);
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
    var ceiling = Math.min(options.backoffMaxMs, options.backoffBaseMs * Math.pow(2, this.attempt));
    var delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: replicas restarted at once
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
    dispatch(message.type, message);
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
    var promise = connection.start().then(function () {
      return connection;
    });
    connection.promise = promise;
    connections.set(tenant, promise);
    promise.catch(function () {
      if (connections.get(tenant) === promise) connections.delete(tenant);
      connection.closed = true;
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
          var unsubscribe = addHandler(type, handler);
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
    on: addHandler,
    configure: configure,
    state: state,
    EmbedSession: EmbedSession,
  });
})(window);
