// Type declarations for tinysse.js, the browser client of the tinysse gateway.

/** One message as the gateway published it. */
export interface TinySSEMessage<T = any> {
  /** "<epoch>-<seq>": the gateway's start time in ms and a counter. */
  id: string;
  /** 0..255, chosen by the publisher. */
  handler_id: number;
  /** The published payload, parsed. */
  data: T;
  /** The publisher's event name; "message" when it named none. */
  event: string;
}

export type TinySSEErrorType = "connect" | "auth" | "parse" | "timeout" | "busy";

export interface TinySSEError {
  /**
   * connect: the stream broke or the gateway is unreachable (the browser retries by itself);
   * auth: the stream was refused (a non-200 status, usually 401) or tokenProvider failed;
   * parse: a message that is not a valid envelope (it is skipped);
   * timeout: no open within connectTimeout (the client reconnects with backoff);
   * busy: the gateway shed the stream (tinysse.busy) and the browser retries after retry_ms.
   */
  type: TinySSEErrorType;
  message: string;
  /** What tokenProvider threw or rejected with (type "auth"). */
  cause?: unknown;
  /** Why the gateway shed the stream (type "busy"). */
  reason?: "max_clients" | "max_clients_per_peer" | "max_connections" | "not_ready" | "shutting_down" | string;
  /** When the browser retries, in ms (type "busy"). */
  retry_ms?: number;
  /** The event name and raw text of a message that failed to parse (type "parse"). */
  event?: string;
  raw?: string;
}

/** The data of the gateway's tinysse.reset event, plus the position it carried. */
export interface TinySSEReset {
  /** The gateway's current position, now the client's last id. */
  id: string;
  type?: "reset";
  reason?: "too_old" | "unknown" | "gap" | string;
  oldest_id?: string | null;
}

/** The data of the gateway's tinysse.subscribed event (gateway run with --subscribed-event). */
export interface TinySSESubscribed<D = any> {
  /** How many channels a server-side subscription (POST /subscriptions) added to the stream; never their names. */
  subscribed: number;
  /** How many it removed. */
  unsubscribed: number;
  /** The change's data, or null. */
  data: D | null;
}

export type TinySSEState = "idle" | "connecting" | "open" | "backoff" | "closed";

/** T: the type of message data the app expects (not checked at run time). */
export interface TinySSEOptions<T = any> {
  /** Stream URL, absolute or relative to the page. Default "/events". */
  endpoint?: string;
  /** Called at start and after every auth failure; returns a stream token. */
  tokenProvider: () => string | Promise<string>;
  /** Each message once, in order, across retries, token rotations and restarts. */
  onMessage?: (msg: TinySSEMessage<T>) => void;
  onError?: (err: TinySSEError) => void;
  /** The gateway could not resume from the last id: refetch your state. */
  onReset?: (reset: TinySSEReset) => void;
  /**
   * A server-side subscription changed the stream's channels (tinysse.subscribed,
   * with --subscribed-event): once per change, in every sharing tab. A body
   * that is not such an object is ignored.
   */
  onSubscribed?: (info: TinySSESubscribed) => void;
  /** Every change of connection state (a sharing follower: its leader's). */
  onState?: (state: TinySSEState) => void;
  /** Backoff base in ms. Default 1000. */
  retryInterval?: number;
  /** Backoff cap in ms. Default 30000. */
  maxRetryDelay?: number;
  /** Time allowed from starting to connect until the stream opens, in ms. Default 10000. */
  connectTimeout?: number;
  /** Named events to receive besides unnamed ones (EventSource needs the names up front). */
  events?: string[];
  /** EventSource withCredentials, for a gateway on another origin (see --cors-origin). */
  withCredentials?: boolean;
  /**
   * Tab sharing: the tabs (and connections) of this origin with the same share
   * name elect one leader (Web Locks) that holds the only stream and passes
   * every message, reset, error and tinysse.subscribed to the others
   * (BroadcastChannel), each tab with its own once-and-in-order check for
   * messages. `true` is the origin's default name;
   * use a name per user/endpoint/events when tabs differ in them (the
   * leader's token, endpoint and events decide what the stream carries). Only
   * the leader calls tokenProvider. When the leader closes or is frozen,
   * another tab takes over and resumes from the earliest last id of the tabs.
   * Without Web Locks or BroadcastChannel (or outside a secure context): one
   * stream per tab, silently. Default: off.
   */
  share?: boolean | string;
}

export interface TinySSEConnection {
  /**
   * Stops everything: the EventSource, timers, and every further callback.
   * A sharing leader also lets go of its lock, so another tab takes over.
   */
  close(): void;
  /** This connection's state; a sharing follower shows its leader's ("connecting" until it hears from one). */
  readonly state: TinySSEState;
  /** Whether this connection holds the stream: always when not sharing (until close()), the elected tab when sharing. */
  readonly leader: boolean;
  /** The last id delivered (or taken from a reset); "" before any. */
  readonly lastEventId: string;
}

/** Loads tinysse.wasm from beside tinysse.js and starts connecting. */
export function connect<T = any>(options: TinySSEOptions<T>): Promise<TinySSEConnection>;
