-- Conversations, their messages, idempotency keys and server secrets.
-- depends:

-- Every row belongs to a tenant: tenant_id leads every key and index.
CREATE TABLE conversations (
    tenant_id           text        NOT NULL,
    id                  text        NOT NULL,
    user_id             text        NOT NULL DEFAULT '',
    agent_id            text        NOT NULL DEFAULT '',
    app_name            text        NOT NULL DEFAULT '',
    title               text        NOT NULL DEFAULT '',
    status              text        NOT NULL DEFAULT 'active'
                                    CHECK (status IN ('active', 'idle', 'closed')),
    summary             text        NOT NULL DEFAULT '',
    metadata            jsonb       NOT NULL DEFAULT '{}',
    state               jsonb       NOT NULL DEFAULT '{}',
    version             bigint      NOT NULL DEFAULT 1,
    message_count       bigint      NOT NULL DEFAULT 0,
    total_input_tokens  bigint      NOT NULL DEFAULT 0,
    total_output_tokens bigint      NOT NULL DEFAULT 0,
    last_message_time   timestamptz,
    last_activity_time  timestamptz NOT NULL DEFAULT now(),
    create_time         timestamptz NOT NULL DEFAULT now(),
    update_time         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- ListConversations: most recent activity first, optionally by user, agent or app.
CREATE INDEX conversations_activity_idx
    ON conversations (tenant_id, last_activity_time DESC, id DESC);
CREATE INDEX conversations_user_activity_idx
    ON conversations (tenant_id, user_id, last_activity_time DESC, id DESC);
CREATE INDEX conversations_agent_activity_idx
    ON conversations (tenant_id, agent_id, last_activity_time DESC, id DESC);
CREATE INDEX conversations_app_user_activity_idx
    ON conversations (tenant_id, app_name, user_id, last_activity_time DESC, id DESC);

-- seq is gapless per conversation: assigned under the conversation's row lock.
CREATE TABLE messages (
    tenant_id        text        NOT NULL,
    conversation_id  text        NOT NULL,
    seq              bigint      NOT NULL CHECK (seq > 0),
    id               uuid        NOT NULL,
    role             text        NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content          text        NOT NULL DEFAULT '',
    name             text        NOT NULL DEFAULT '',
    tool_calls       jsonb       NOT NULL DEFAULT '[]',
    tool_call_id     text        NOT NULL DEFAULT '',
    token_count      integer     NOT NULL DEFAULT 0 CHECK (token_count >= 0),
    model            text        NOT NULL DEFAULT '',
    metadata         jsonb       NOT NULL DEFAULT '{}',
    feedback_rating  text        CHECK (feedback_rating IN ('positive', 'negative')),
    feedback_comment text,
    feedback_time    timestamptz,
    create_time      timestamptz NOT NULL DEFAULT now(),
    -- The context window is a backward range scan of this key.
    PRIMARY KEY (tenant_id, conversation_id, seq),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);

-- GetContextWindow(include_system_messages) finds old system messages without a scan.
CREATE INDEX messages_system_idx
    ON messages (tenant_id, conversation_id, seq) WHERE role = 'system';

-- Idempotency keys of every service, written in the transaction of the change
-- they guard: resource_id is what the call created or changed, item_ids its
-- parts (appended message ids, batch-created memory ids).
CREATE TABLE idempotency_keys (
    tenant_id    text        NOT NULL,
    request_id   text        NOT NULL,
    method       text        NOT NULL,
    request_hash bytea       NOT NULL,
    resource_id  text        NOT NULL,
    item_ids     uuid[]      NOT NULL DEFAULT '{}',
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (create_time);

-- Server-wide secrets (the page token key), shared by every replica.
CREATE TABLE server_secrets (
    name  text  PRIMARY KEY,
    value bytea NOT NULL
);
