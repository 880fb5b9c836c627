//! The command line: every command, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keys, capability tokens and RFC 9421 signed requests, from the command line.
///
/// Exit status: 0 on success, 1 when a check rejects (the reason on stderr, one line), 2 on bad
/// usage or unreadable input. Machine output goes to stdout (JSON where it is structured), and
/// nothing else does.
#[derive(Debug, Parser)]
#[command(name = "vouch", version, about, long_about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Writes a new Ed25519 key and prints its public key (hex).
    #[command(after_help = "\
Examples:
  vouch keygen --out root.pem                 # PKCS#8 PEM, mode 0600
  vouch keygen --out agent.jwk --format jwk
  vouch keygen --out - > key.pem              # the key on stdout, the public hex on stderr")]
    Keygen {
        /// Where to write the private key (refuses to overwrite); `-` for stdout.
        #[arg(long, default_value = "vouch.key")]
        out: PathBuf,
        /// The private key's file format.
        #[arg(long, value_enum, default_value_t = PrivateFormat::Pem)]
        format: PrivateFormat,
    },
    /// Prints the public key of a key file.
    #[command(after_help = "\
Examples:
  vouch pubkey --key root.pem
  vouch pubkey --key root.pem --format jwk")]
    Pubkey {
        /// A private or public key file, in any format vouch reads.
        #[arg(long)]
        key: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PublicFormat::Hex)]
        format: PublicFormat,
    },
    /// Mints a root capability token signed by the root key.
    #[command(after_help = "\
No --tools grants every tool. Without --ttl the token lives one hour.

Examples:
  vouch mint --key root.pem --issuer auth --subject agent-a --tools db_query,search \\
      --op db_query:read --op db_query:write --limit db_query:max_rows=100 --ttl 3600
  vouch mint --key root.pem --bind https://agents.example/a --audience https://mcp.example")]
    Mint {
        /// The root private key file.
        #[arg(long)]
        key: PathBuf,
        /// Who issues the token.
        #[arg(long, default_value = "vouch")]
        issuer: String,
        /// Whom the token is for.
        #[arg(long, default_value = "agent")]
        subject: String,
        #[command(flatten)]
        rights: RightsArgs,
    },
    /// Narrows a token for a sub-agent, offline; refuses anything that would widen it.
    #[command(after_help = "\
The token is verified against the root public key first. A restriction that would widen the
token (a tool, operation or audience its parent does not grant, a larger limit, ...) is refused
with exit status 1.

Examples:
  vouch attenuate --token \"$TOKEN\" --pubkey root.pub --tools db_query --op db_query:read \\
      --limit db_query:max_rows=10 --ttl 600 --bind https://agents.example/worker
  echo \"$TOKEN\" | vouch attenuate --token - --pubkey 3b6a27bc... --max-depth 0")]
    Attenuate {
        /// The token, or `-` to read it from stdin.
        #[arg(long)]
        token: String,
        /// The root public key: hex, did:key, or a key file in any format vouch reads.
        #[arg(long)]
        pubkey: String,
        #[command(flatten)]
        rights: RightsArgs,
    },
    /// Seals a token so that nobody can attenuate it further.
    #[command(after_help = "\
Examples:
  vouch seal --token \"$TOKEN\"
  vouch attenuate --token \"$T\" --pubkey root.pub --tools search | vouch seal --token -")]
    Seal {
        /// The token, or `-` to read it from stdin.
        #[arg(long)]
        token: String,
    },
    /// Verifies a token and prints what it grants (JSON).
    #[command(after_help = "\
Examples:
  vouch verify --token \"$TOKEN\" --pubkey root.pub
  vouch verify --token \"$TOKEN\" --pubkey root.pub --tool db_query --op write \\
      --caller https://agents.example/worker --audience https://mcp.example --now 1700000000")]
    Verify {
        /// The token, or `-` to read it from stdin.
        #[arg(long)]
        token: String,
        /// The root public key: hex, did:key, or a key file in any format vouch reads.
        #[arg(long)]
        pubkey: String,
        /// Require the token to grant this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Require the token to grant this operation on --tool.
        #[arg(long, requires = "tool")]
        op: Option<String>,
        /// This verifier's audience (a token restricted to audiences must name it).
        #[arg(long)]
        audience: Option<String>,
        /// The keyid that signed the request carrying the token (for holder-bound tokens).
        #[arg(long)]
        caller: Option<String>,
        /// Verify as of this Unix time (seconds) instead of now.
        #[arg(long, value_name = "UNIX_SECS")]
        now: Option<u64>,
    },
    /// Shows what a token claims, block by block, without checking any signature.
    #[command(after_help = "\
Never authorize anything on what inspect prints: use verify.

Examples:
  vouch inspect --token \"$TOKEN\"
  vouch inspect --token - --json < token.txt")]
    Inspect {
        /// The token, or `-` to read it from stdin.
        #[arg(long)]
        token: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Signs a raw HTTP request (RFC 9421, with an RFC 9530 Content-Digest).
    #[command(after_help = "\
REQUEST_FILE is a raw HTTP/1.1 request: request line, header fields, a blank line, and the body
(Content-Length bytes). It is printed back with Content-Digest (unless --digest none; an existing
one is replaced), Signature-Input and Signature added.

Without --components the profile chooses what is covered and which parameters are set (mcp:
@method, @target-uri, content-digest and the MCP headers present, with created, nonce, alg and
keyid; web-bot-auth: @authority, @method, @path, @query when there is one, content-digest when
present and the Signature-Agent member, with created, expires (created + 300 unless given; at
most 24 h later), the key's JWK thumbprint as keyid, alg, nonce and tag=\"web-bot-auth\"; the
request gets Signature-Agent: LABEL=\"URL\" from --signature-agent; sep2752: @method,
@target-uri, content-digest, and MCP-Protocol-Version and MCP-Session-Id when present, with
created, nonce, keyid (the key's JWK thumbprint) and tag (--tag, or the keyid), no alg). With
--components exactly what the command line names is signed: created (now unless given) and
keyid, plus nonce, alg, expires and tag only when given.

Examples:
  vouch sign --key agent.pem --keyid https://agents.example/a request.http
  vouch sign --key agent.pem --profile web-bot-auth --signature-agent https://agent.example \
      --digest none request.http
  vouch sign --key agent.pem --keyid agent-a --profile envoys --scheme http request.http
  vouch sign --key agent.pem --profile sep2752 --tag agent-instance-9f3e request.http
  vouch sign --key rfc.pem --keyid test-key-ed25519 --label sig-b26 --created 1618884473 \\
      --digest none --components '\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\"' \\
      request.http")]
    Sign(SignArgs),
    /// Verifies the signature of a raw HTTP request and prints the verified identity (JSON).
    #[command(after_help = "\
Without --require the profile's components are required (mcp: @method, @target-uri, a
content-digest whenever there is a body, and the MCP headers when present; sep2752: the same
without Authorization, content-digest always, and created, nonce, tag and a keyid that is the
key's JWK thumbprint; envoys: @method, @path, content-digest); with it, exactly those named. A Content-Digest present in the request must match the body, covered or not.
check keeps no replay state, so a nonce is required only with --require-nonce.

--profile web-bot-auth checks the Web Bot Auth profile instead (tag web-bot-auth, @authority and
the Signature-Agent member covered, expires at most 24 h after created, keyid the key's JWK
thumbprint) and takes the key from --pubkey, from a directory file (--directory), or else from
the directory the covered Signature-Agent member names, fetched over https (public addresses
only, no redirects, media type application/http-message-signatures-directory+json).

With --request REQUEST_FILE the positional file is a raw response, checked under vouch's
response profile: signed by --pubkey under the label reqres (or --label), covering @status,
content-type and mcp-session-id when present, content-digest unless it is an event stream, and
the request's @method;req, @target-uri;req and \"signature\";req;key=\"sig1\" (or
--request-label), read from REQUEST_FILE as it was sent.

Examples:
  vouch check --pubkey agent.pub signed.http
  vouch check --profile web-bot-auth signed.http
  vouch check --pubkey agent.pub --profile sep2752 signed.http
  vouch check --pubkey rfc.pub --now 1618884480 --max-age 60 \\
      --require '\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\"' \\
      --scheme https b26.http
  vouch check --pubkey server.pub --request signed.http answer.http")]
    Check(CheckArgs),
    /// Prints a Web Bot Auth key directory (a JWK Set) for one's own keys.
    #[command(after_help = "\
Without --signature-agent, prints the directory document (JSON, one line). With it, prints the
response a directory server sends for GET <URL>/.well-known/http-message-signatures-directory:
header lines (Content-Type application/http-message-signatures-directory+json, Content-Digest,
and one signature per key, labelled binding0, binding1, ..., covering \"@authority\";req and
content-digest, tagged http-message-signatures-directory), a blank line, then the body, exactly
the bytes the digest covers (no trailing newline). Serve those headers and body as they are.

Examples:
  vouch directory --key agent.pem > directory.json
  vouch directory --key agent.pem --key next.pem --signature-agent https://agent.example")]
    Directory(DirectoryArgs),
    /// Operator actions on a key pin store.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Runs a reverse proxy that verifies signatures and tokens in front of an MCP server.
    #[command(after_help = "\
Serves /mcp (and /healthz unsigned) on --listen and forwards verified requests to --upstream,
with the verified identity in X-Vouch-Identity. Every flag can also be set in --config (TOML,
keys named as the flags without the leading dashes); flags override the file. Exit status 2
on a configuration error, 0 after SIGTERM or SIGINT.

With --sign-upstream KEYFILE --upstream-keyid KEYID (both or neither) the gateway signs each
forwarded request with its own key, so that a vouch-protected upstream can verify it; add
--forward-token if the upstream checks tokens too.

With --sign-responses KEYFILE --response-keyid KEYID (both or neither) the gateway signs each
answer to a verified request with its own key, bound to that request (RFC 9421 section 2.4):
the upstream's Signature, Signature-Input and Content-Digest are replaced, JSON bodies are
digested (up to 4 MiB), event streams are signed over their head only.

Without --root the gateway is an identity gate only: requests must be signed by an admitted
signer, no token is asked for, and the upstream gets X-Vouch-Identity and X-Vouch-Keyid.

With --upstream-socket SOCKET the gateway reaches the upstream over that Unix domain socket;
--upstream (http://) still gives the Host and path sent.

Examples:
  vouch gateway --upstream http://127.0.0.1:8000/mcp --root root.pub \\
      --agent https://agents.example/a=agent.pub --op db_query:read
  vouch gateway --upstream http://mcp.internal/mcp --upstream-socket /run/mcp/mcp.sock \\
      --root root.pub --agent https://agents.example/a=agent.pub
  vouch gateway --config gateway.toml --listen 0.0.0.0:8080 \\
      --origin https://gateway.example")]
    Gateway(Box<GatewayArgs>),
    /// Runs the gateway's checks as an Envoy external authorizer (ext_authz, gRPC and HTTP).
    #[command(after_help = "\
Envoy asks before forwarding each request: --grpc serves the gRPC API
(envoy.service.auth.v3.Authorization/Check), --http the HTTP mode (http_service: checks under
--http-prefix, and GET /healthz); at least one, --grpc 127.0.0.1:9191 if neither is given. An
allowed request goes upstream with X-Vouch-Identity, X-Vouch-Keyid and X-Vouch-Grants set and
the token, Signature and Signature-Input removed; a denied one gets the gateway's answer (401,
403, 421, 429, 503 ...). Envoy must send the body (with_request_body; pack_as_bytes over gRPC),
unless --headers-only: then the decision rests on the signed Mcp-Method / Mcp-Name headers and
the upstream must check the body against Content-Digest (vouch-tower's DigestCheckLayer).
--origin is required: how clients address Envoy. Share --replay and --pins (redis:// URLs)
between replicas. Flags and --config as for vouch gateway, without the upstream and forwarding
ones. Exit status 2 on a configuration error, 0 after SIGTERM or SIGINT.

Examples:
  vouch authz --grpc 127.0.0.1:9191 --origin https://mcp.example --root root.pub \\
      --agent https://agents.example/a=agent.pub --replay redis://127.0.0.1:6379
  vouch authz --http 127.0.0.1:9192 --config authz.toml")]
    Authz(Box<AuthzArgs>),
    /// Runs the end-to-end demo: a real rmcp server behind vouch, allowed and rejected calls.
    #[command(after_help = "\
Example:
  vouch demo")]
    Demo,
}

/// The restrictions `mint` and `attenuate` take.
#[derive(Debug, Args)]
pub(crate) struct RightsArgs {
    /// Only these tools (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "a,b")]
    pub(crate) tools: Option<Vec<String>>,
    /// Only this operation on this tool (repeatable): TOOL:OP, e.g. db_query:read.
    #[arg(long = "op", value_name = "TOOL:OP")]
    pub(crate) ops: Vec<String>,
    /// A resource limit (repeatable): TOOL:KEY=N, e.g. db_query:max_rows=100.
    #[arg(long = "limit", value_name = "TOOL:KEY=N")]
    pub(crate) limits: Vec<String>,
    /// Seconds until expiry.
    #[arg(long, value_name = "SECS")]
    pub(crate) ttl: Option<u64>,
    /// Only at verifiers with this audience (repeatable).
    #[arg(long = "audience", value_name = "A")]
    pub(crate) audiences: Vec<String>,
    /// At most this many further attenuations (0 to 15).
    #[arg(long, value_name = "N")]
    pub(crate) max_depth: Option<u8>,
    /// Bind to a holder: the keyid that must sign each request carrying the token.
    #[arg(long, value_name = "KEYID")]
    pub(crate) bind: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The signer's private key file, in any format vouch reads.
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// The keyid parameter: who is signing (required but under --profile web-bot-auth and
    /// --profile sep2752, where it is the key's JWK thumbprint).
    #[arg(long)]
    pub(crate) keyid: Option<String>,
    /// Web Bot Auth: the URL the signer's keys are published at (an https origin serving
    /// /.well-known/http-message-signatures-directory), sent as Signature-Agent: LABEL="URL".
    #[arg(long, value_name = "URL")]
    pub(crate) signature_agent: Option<String>,
    /// Web Bot Auth: send the legacy Signature-Agent of earlier drafts, one string
    /// (Signature-Agent: "URL"), covered as the whole field (for verifiers such as Cloudflare's
    /// web-bot-auth 0.1.3 npm package that read only that form).
    #[arg(long, requires = "signature_agent")]
    pub(crate) legacy_signature_agent: bool,
    /// Add the alg parameter (the key's algorithm; only ed25519 keys sign).
    #[arg(long, value_parser = ["ed25519"])]
    pub(crate) alg: Option<String>,
    /// The signature's label.
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// The created parameter, Unix seconds (default now).
    #[arg(long, value_name = "UNIX")]
    pub(crate) created: Option<u64>,
    /// The expires parameter, Unix seconds.
    #[arg(long, value_name = "UNIX")]
    pub(crate) expires: Option<u64>,
    /// The nonce parameter (the mcp and envoys profiles otherwise pick a random one).
    #[arg(long, value_name = "S")]
    pub(crate) nonce: Option<String>,
    /// The tag parameter (sep2752: the client's stable identifier, by default the keyid).
    #[arg(long, value_name = "S")]
    pub(crate) tag: Option<String>,
    /// SEP-2752: add a Signature-Agent field carrying the signer's public key inline (a data:
    /// JWKS, as SEP-2752 clients that host no key directory send it); replaces an existing one.
    #[arg(long, conflicts_with = "signature_agent")]
    pub(crate) inline_signature_agent: bool,
    /// Exactly the components to sign, as in Signature-Input: '"@method" "@path" ...'.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub(crate) components: Option<String>,
    /// The Content-Digest algorithm, or none to leave the request's headers as they are.
    #[arg(long, value_enum, default_value_t = DigestArg::Sha256)]
    pub(crate) digest: DigestArg,
    /// The signing profile used when --components is not given.
    #[arg(long, value_enum, default_value_t = Profile::Mcp)]
    pub(crate) profile: Profile,
    /// The scheme the request is sent with (a raw request does not say).
    #[arg(long, value_enum, default_value_t = Scheme::Https)]
    pub(crate) scheme: Scheme,
    /// The raw HTTP request, or `-` for stdin.
    #[arg(value_name = "REQUEST_FILE")]
    pub(crate) request: String,
}

#[derive(Debug, Args)]
pub(crate) struct DirectoryArgs {
    /// A private key to publish (Ed25519, any format vouch reads); repeat for several.
    #[arg(long, required = true)]
    pub(crate) key: Vec<PathBuf>,
    /// The origin the directory is served at: sign the response for it.
    #[arg(long, value_name = "URL")]
    pub(crate) signature_agent: Option<String>,
    /// The created parameter of the response signatures, Unix seconds (default now).
    #[arg(long, value_name = "UNIX")]
    pub(crate) created: Option<u64>,
    /// The expires parameter of the response signatures, Unix seconds (default created + 1 day).
    #[arg(long, value_name = "UNIX")]
    pub(crate) expires: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The signer's public key: hex, did:key, or a key file (Ed25519 in any format vouch reads;
    /// RSA or ECDSA as PEM). Required but under --profile web-bot-auth.
    #[arg(long)]
    pub(crate) pubkey: Option<String>,
    /// The checking profile.
    #[arg(long, value_enum, default_value_t = Profile::Mcp)]
    pub(crate) profile: Profile,
    /// Web Bot Auth: a key directory (JWK Set) file to find the key in by thumbprint, instead
    /// of fetching the one the Signature-Agent names.
    #[arg(long, value_name = "FILE", conflicts_with = "pubkey")]
    pub(crate) directory: Option<PathBuf>,
    /// Web Bot Auth: also accept the legacy Signature-Agent of earlier drafts (one string,
    /// covered as the whole field), read as a member keyed by the signature's label.
    #[arg(long)]
    pub(crate) legacy_signature_agent: bool,
    /// Require this keyid.
    #[arg(long, value_name = "K")]
    pub(crate) keyid: Option<String>,
    /// Only consider the signature with this label.
    #[arg(long, value_name = "L")]
    pub(crate) label: Option<String>,
    /// Check as of this Unix time (seconds) instead of now.
    #[arg(long, value_name = "UNIX")]
    pub(crate) now: Option<u64>,
    /// Maximum age of the created parameter, in seconds (default 300; 86400 under
    /// --profile web-bot-auth, whose signatures live until expires).
    #[arg(long, value_name = "SECS")]
    pub(crate) max_age: Option<u64>,
    /// Require exactly these components: '"@method" "@path" ...'.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub(crate) require: Option<String>,
    /// The algorithm to accept (default: the key's own; RSA keys need it).
    #[arg(long, value_name = "A")]
    pub(crate) alg: Option<String>,
    /// Require a nonce parameter.
    #[arg(long)]
    pub(crate) require_nonce: bool,
    /// The scheme the request was sent with (a raw request does not say).
    #[arg(long, value_enum, default_value_t = Scheme::Https)]
    pub(crate) scheme: Scheme,
    /// The raw HTTP request, or `-` for stdin; with --request, the raw HTTP response.
    #[arg(value_name = "REQUEST_FILE")]
    pub(crate) request: String,
    /// Check a signed response (vouch's response profile, RFC 9421 §2.4): the positional file is
    /// the raw response, and this file the raw request it answers, as sent (signed).
    #[arg(long = "request", value_name = "REQUEST_FILE")]
    pub(crate) answered: Option<String>,
    /// With --request: the label of the request's signature the response must be bound to
    /// [default: sig1].
    #[arg(long, value_name = "L")]
    pub(crate) request_label: Option<String>,
}

/// `vouch gateway`: every field optional here, so that `--config` can supply it.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The MCP endpoint to forward to: an http:// or https:// URL (required, here or in
    /// --config).
    #[arg(long, value_name = "URL")]
    pub(crate) upstream: Option<String>,
    /// For an https:// upstream: trust the certificate authorities in this PEM file instead of
    /// the Mozilla root store.
    #[arg(long, value_name = "PEM_FILE")]
    pub(crate) upstream_ca: Option<PathBuf>,
    /// Connect to the upstream over this Unix domain socket instead of TCP (an upstream beside
    /// the gateway); --upstream, an http:// URL, still gives the Host, the path and what
    /// --sign-upstream signs.
    #[arg(long, value_name = "SOCKET")]
    pub(crate) upstream_socket: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Sign every forwarded request with this private key (vouch's MCP profile, for the
    /// upstream's URL, covering the X-Vouch-* fields); needs --upstream-keyid.
    #[arg(long, value_name = "KEYFILE")]
    pub(crate) sign_upstream: Option<PathBuf>,
    /// The keyid the upstream knows --sign-upstream's key by; needs --sign-upstream.
    #[arg(long, value_name = "KEYID")]
    pub(crate) upstream_keyid: Option<String>,
    /// Forward the token header to the upstream (default: removed), for an upstream that checks
    /// tokens itself, e.g. a vouch-protected server behind --sign-upstream.
    #[arg(long)]
    pub(crate) forward_token: bool,
    /// Sign every answer to a verified request with this private key, bound to the request
    /// (RFC 9421 §2.4; the upstream's own signature fields are replaced; event streams are
    /// signed over their head only); needs --response-keyid.
    #[arg(long, value_name = "KEYFILE")]
    pub(crate) sign_responses: Option<PathBuf>,
    /// The keyid clients know --sign-responses' key by; needs --sign-responses.
    #[arg(long, value_name = "KEYID")]
    pub(crate) response_keyid: Option<String>,
}

/// `vouch authz`: every field optional here, so that `--config` can supply it.
#[derive(Debug, Args)]
pub(crate) struct AuthzArgs {
    /// Serve Envoy's gRPC ext_authz API (envoy.service.auth.v3.Authorization/Check, HTTP/2
    /// without TLS) on this address [default: 127.0.0.1:9191 when neither --grpc nor --http is
    /// given].
    #[arg(long, value_name = "ADDR")]
    pub(crate) grpc: Option<String>,
    /// Serve Envoy's HTTP ext_authz mode (http_service) and GET /healthz on this address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<String>,
    /// The HTTP mode's path prefix, as Envoy's http_service.path_prefix [default: /check].
    #[arg(long, value_name = "PATH")]
    pub(crate) http_prefix: Option<String>,
    /// Decide on the request head alone, for a proxy that does not send the body (Envoy without
    /// with_request_body) or cuts it (Gateway API ExternalAuth): the signature must cover
    /// content-digest, Mcp-Method and Mcp-Name, the tool comes from those signed headers, and
    /// the upstream MUST check the digest against the body (vouch-tower's DigestCheckLayer).
    #[arg(long)]
    pub(crate) headers_only: bool,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

/// What `vouch gateway` and `vouch authz` both take.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// How clients address the server (repeatable): a signature made for any other authority is
    /// refused (421). Required by authz; the gateway's default is http://<listen address>.
    #[arg(long = "origin", value_name = "URL")]
    pub(crate) origins: Vec<String>,
    /// A TOML file with the same settings; flags override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// A signer's key (repeatable): KEYID=PUBKEY, the key as hex, did:key or a key file.
    #[arg(long = "agent", value_name = "KEYID=PUBKEY")]
    pub(crate) agents: Vec<String>,
    /// Resolve other keyids over HTTPS (cached).
    #[arg(long)]
    pub(crate) resolve_https: bool,
    /// Admit only identities matching this pattern (repeatable; `*` matches any run of
    /// characters). Without any, every verified signer is admitted.
    #[arg(long = "allow", value_name = "PATTERN")]
    pub(crate) allows: Vec<String>,
    /// A trusted token root public key (repeatable): hex, did:key or a key file. Without any,
    /// no token is checked (identity-only).
    #[arg(long = "root", value_name = "PUBKEY")]
    pub(crate) roots: Vec<String>,
    /// An audience of this server (repeatable), for tokens restricted to audiences; needs
    /// --root.
    #[arg(long = "audience", value_name = "A")]
    pub(crate) audiences: Vec<String>,
    /// The header carrying the token [default: X-MCPVault-Token].
    #[arg(long, value_name = "NAME")]
    pub(crate) token_header: Option<String>,
    /// The operation a call to a tool performs (repeatable): TOOL:OP [default: execute].
    #[arg(long = "op", value_name = "TOOL:OP")]
    pub(crate) ops: Vec<String>,
    /// The signature verification profile [default: mcp].
    #[arg(long, value_enum)]
    pub(crate) profile: Option<Profile>,
    /// With --profile sep2752: also accept the key a request presents inline in its
    /// Signature-Agent field (a data: JWKS; URLs are not fetched). Anyone can then make a key
    /// that verifies: admit callers with --allow (on the key's JWK thumbprint) or --pins.
    #[arg(long)]
    pub(crate) signature_agent_keys: bool,
    /// The replay store: memory, memory:N (N nonces) or a redis:// URL [default: memory].
    #[arg(long, value_name = "memory[:N]|REDIS_URL")]
    pub(crate) replay: Option<String>,
    /// Pin each identity's first key: a pin store file or a redis:// URL.
    #[arg(long, value_name = "FILE|REDIS_URL")]
    pub(crate) pins: Option<String>,
    /// Requests per second per identity, bursts of twice as many [default: 50, bursts of 100].
    #[arg(long, value_name = "N")]
    pub(crate) rate: Option<u32>,
    /// Serve Prometheus metrics at GET /metrics on this address (a separate listener).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<String>,
    /// The log format on stderr: one line per decision and per warning [default: text].
    #[arg(long, value_enum)]
    pub(crate) log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Plain text.
    Text,
    /// JSON lines.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PinCommand {
    /// Removes an identity's key pin, so that its next verified key is pinned anew.
    #[command(after_help = "\
Prints {\"identity\": ..., \"was_pinned\": true|false}. The store file must exist.

Example:
  vouch pin reset --store /var/lib/mcp/pins.json https://agents.example/a")]
    Reset {
        /// The pin store file (as used by vouch_keys::FilePinStore).
        #[arg(long)]
        store: PathBuf,
        /// The identity (keyid) whose pin to remove.
        identity: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PrivateFormat {
    /// PKCS#8 PEM (`PRIVATE KEY`).
    Pem,
    /// JWK with `d`.
    Jwk,
    /// MCPVault's JSON key file: {"private_key": hex, "public_key": hex}.
    Hex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PublicFormat {
    /// 64 hex digits.
    Hex,
    /// SPKI PEM (`PUBLIC KEY`).
    Pem,
    /// JWK.
    Jwk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DigestArg {
    /// sha-256.
    #[value(name = "sha-256")]
    Sha256,
    /// sha-512.
    #[value(name = "sha-512")]
    Sha512,
    /// No Content-Digest is added.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Profile {
    /// vouch's MCP profile.
    Mcp,
    /// The Python envoys client's profile.
    Envoys,
    /// Web Bot Auth (draft-ietf-webbotauth-httpsig-protocol): tag web-bot-auth, thumbprint
    /// keyid, @authority and the Signature-Agent member covered, expires at most 24 h after
    /// created.
    #[serde(rename = "web-bot-auth")]
    WebBotAuth,
    /// SEP-2752 (RFC 9421 proof-of-possession client authentication for MCP): keyid = the
    /// key's JWK thumbprint, a tag, no alg.
    Sep2752,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scheme {
    /// https.
    Https,
    /// http.
    Http,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }
}
