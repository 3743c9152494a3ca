-- Peer of the `core_work` step: core.tasks (Asana tasks and Linear issues in one shape: team, state, the
-- created/started/completed/canceled times, the assignee's employee key) and core.messages (Slack messages with
-- their author's employee key, reply and thread-root flags). Left to the pandas step only: projects, cycles,
-- channels, account mentions in messages, Notion pages and Looker looks.

create or replace table core.tasks as
with asana as (
    select 'task_asana_' || t.gid as task_key, 'asana' as system, t.gid as system_id, null as identifier,
           'asana_' || t.project_gid as project_key, null as cycle_key, t.name as title, p.team_name as team,
           ex.employee_key as assignee_employee_key,
           case when t.completed then 'done' when regexp_matches(t.section_name, '(?i)progress|doing|started|review')
               then 'in_progress' else 'todo' end as state,
           lower(t.priority) as priority, t.estimate, t.created_at,
           case when t.completed or regexp_matches(t.section_name, '(?i)progress|doing|started|review')
               then t.start_on::timestamptz end as started_at,
           case when t.completed then t.completed_at end as completed_at, null::timestamptz as canceled_at,
           case when t.completed then t.completed_at end as closed_at, t.due_on, t.modified_at as updated_at
    from raw_asana.tasks t
    left join raw_asana.projects p on p.gid = t.project_gid and p._sophia_deleted is not true
    left join core.employee_xref ex on ex.system = 'asana' and ex.system_id = t.assignee_gid
    where t._sophia_deleted is not true),
linear as (
    select 'task_linear_' || i.id as task_key, 'linear' as system, i.id as system_id, i.identifier,
           'linear_' || i.project_id as project_key, 'linear_' || i.cycle_id as cycle_key, i.title, tm.name as team,
           ex.employee_key as assignee_employee_key,
           case lower(i.state_type) when 'started' then 'in_progress' when 'completed' then 'done'
               when 'canceled' then 'canceled' else 'todo' end as state,
           case i.priority when 1 then 'urgent' when 2 then 'high' when 3 then 'medium' when 4 then 'low' else 'none' end
               as priority, i.estimate, i.created_at, i.started_at,
           case when lower(i.state_type) = 'completed' then i.completed_at end as completed_at,
           case when lower(i.state_type) = 'canceled' then i.canceled_at end as canceled_at,
           case when lower(i.state_type) = 'completed' then i.completed_at
               when lower(i.state_type) = 'canceled' then i.canceled_at end as closed_at, i.due_date as due_on,
           i.updated_at
    from raw_linear.issues i
    left join raw_linear.teams tm on tm.id = i.team_id
    left join core.employee_xref ex on ex.system = 'linear' and ex.system_id = i.assignee_id
    where i._sophia_deleted is not true and i.trashed is not true)
select * from asana union all by name select * from linear;

create or replace table core.messages as
select 'msg_slack_' || m.channel_id || '_' || m.ts as message_key, m.channel_id, m.ts, m.posted_at as sent_at,
       ex.employee_key, m.user_id, m.bot_id is not null as is_bot, m.subtype, coalesce(m.is_reply, false) as is_reply,
       not coalesce(m.is_reply, false) and (coalesce(m.reply_count, 0) > 0 or m.thread_ts = m.ts) as is_thread_root,
       m.reply_count, m.reply_users_count,
       len(regexp_split_to_array(trim(m.text), '\s+')) as word_count
from raw_slack.messages m
left join core.employee_xref ex on ex.system = 'slack' and ex.system_id = m.user_id
where m._sophia_deleted is not true;
