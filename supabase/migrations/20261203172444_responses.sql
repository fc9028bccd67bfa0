-- llm-relay read model: conversations, answers and their text as append-only chunks.
-- Plain SQL, so `supabase db push` applies it to a Supabase project; the status service applies the
-- same files itself on start-up (recorded in relay_schema_migrations). Idempotent on purpose.

-- A conversation id is scoped to its user: someone who sends another user's conversation id starts a
-- conversation of their own under it, and never sees or joins the other one.
create table if not exists conversations (
    id          uuid not null,
    user_id     text not null,
    title       text not null default '',
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    primary key (user_id, id)
);

create index if not exists conversations_user_recent on conversations (user_id, updated_at desc);

create table if not exists responses (
    id             uuid primary key,
    conversation_id uuid not null,
    user_id        text not null,
    question       text not null,
    model          text,
    status         text not null check (status in
                     ('queued', 'retrieving', 'generating', 'completed', 'truncated',
                      'content_filtered', 'failed', 'cancelled')),
    attempt        integer not null default 0,   -- the generator's delivery count; text belongs to it
    text_length    integer not null default 0,   -- Unicode characters of the current attempt's text
    next_seq       integer not null default 0,   -- next delta sequence number expected
    chunk_count    integer not null default 0,   -- response_chunks rows of the current attempt
    sources        jsonb not null default '[]'::jsonb,
    error_code     text,
    error_message  text,
    finish_reason  text,
    usage          jsonb,
    model_ttft_ms  double precision,             -- provider call → first token (the generator's clock)
    user_ttft_ms   double precision,             -- question accepted → first token stored
    total_ms       double precision,
    created_at     timestamptz not null,         -- when ingress accepted the question
    updated_at     timestamptz not null,
    completed_at   timestamptz,
    foreign key (user_id, conversation_id) references conversations (user_id, id) on delete cascade
);

create index if not exists responses_conversation_turns on responses (conversation_id, created_at);
create index if not exists responses_user_recent on responses (user_id, updated_at desc);
-- The sweeper's and the in-flight gauge's question: which answers are still running, oldest update first.
create index if not exists responses_in_flight on responses (updated_at)
    where status in ('queued', 'retrieving', 'generating');
create index if not exists responses_created on responses (created_at);

-- The answer's text, appended once per flush tick and never rewritten. A poll with `since` reads only
-- the rows of the current attempt that end after its offset (a backward scan of the primary key).
create table if not exists response_chunks (
    response_id  uuid not null references responses (id) on delete cascade,
    attempt      integer not null,
    seq          integer not null,       -- row number inside the attempt: 0, 1, 2…
    start_offset integer not null,       -- Unicode characters of the attempt's text before this row
    body         text not null,
    primary key (response_id, attempt, seq)
);

-- Supabase exposes the public schema over its REST API: no policies means no anonymous access.
-- The status service connects as the owner, which row level security does not restrict.
alter table conversations enable row level security;
alter table responses enable row level security;
alter table response_chunks enable row level security;

-- Retention: delete answers (and their text) accepted longer ago than max_age, then the
-- conversations left without any answer. Returns how many answers were deleted.
create or replace function relay_delete_responses_older_than(max_age interval)
returns integer
language plpgsql
as $$
declare
    deleted integer;
begin
    delete from responses where created_at < now() - max_age;
    get diagnostics deleted = row_count;
    delete from conversations c
     where c.updated_at < now() - max_age
       and not exists (select 1 from responses r where r.conversation_id = c.id and r.user_id = c.user_id);
    return deleted;
end
$$;
