-- Peer of the `work_marts` step: marts.team_productivity (team × week grid from each team's first active week:
-- messages, threads, active members, tasks created/started/completed/canceled, points, 4-week throughput, WIP,
-- open tasks) and marts.delivery_cycle_times (one row per done task with lead and cycle times).
-- Left to the pandas step only: cycle delivery, project status, workload and the knowledge marts.

create or replace temp table employee_team as
select assignee_employee_key as employee_key, arg_max(team, n) as team from (
    select assignee_employee_key, team, count(*) as n from core.tasks
    where assignee_employee_key is not null and team is not null group by all) group by 1;

create or replace table marts.team_productivity as
with msgs as (
    select coalesce(t.team, 'Unassigned') as team, date_trunc('week', timezone('UTC', m.sent_at)) as week, m.employee_key,
           m.is_reply, m.is_thread_root
    from core.messages m left join employee_team t using (employee_key) where not m.is_bot and m.sent_at is not null),
work as (select coalesce(team, 'Unassigned') as team, * exclude (team) from core.tasks),
firsts as (
    select team, min(week) as first_week from (
        select team, week from msgs
        union all select team, date_trunc('week', timezone('UTC', created_at)) from work where created_at is not null)
    group by team),
grid as (
    select team, unnest(range(first_week, greatest(date_trunc('week', timezone('UTC', getvariable('as_of'))),
                 (select max(first_week) from firsts)) + interval 1 day, interval 7 day)) as week from firsts),
m as (select team, week, count(*) as messages, count(*) filter (where is_thread_root) as threads_started,
             count(*) filter (where is_reply) as thread_replies, count(distinct employee_key) as active_members
      from msgs group by all),
ev as (
    select team, date_trunc('week', timezone('UTC', ts)) as week, kind, system, started, estimate from (
        select team, created_at as ts, 'created' as kind, system, started_at is not null as started, estimate from work
        union all select team, started_at, 'started', system, true, estimate from work
        union all select team, completed_at, 'completed', system, started_at is not null, estimate
            from work where state = 'done'
        union all select team, canceled_at, 'canceled', system, started_at is not null, estimate from work
        union all select team, closed_at, 'closed', system, started_at is not null, estimate from work)
    where ts is not null),
w as (select team, week, count(*) filter (where kind = 'created') as tasks_created,
             count(*) filter (where kind = 'started') as tasks_started,
             count(*) filter (where kind = 'completed') as tasks_completed,
             count(*) filter (where kind = 'canceled') as tasks_canceled,
             count(*) filter (where kind = 'completed' and system = 'asana') as asana_tasks_completed,
             count(*) filter (where kind = 'completed' and system = 'linear') as linear_issues_completed,
             coalesce(sum(estimate) filter (where kind = 'completed'), 0) as points_completed,
             count(*) filter (where kind = 'closed') as closed,
             count(*) filter (where kind = 'closed' and started) as closed_started
      from ev group by all),
joined as (
    select g.team, g.week, coalesce(m.messages, 0) as messages, coalesce(m.threads_started, 0) as threads_started,
           coalesce(m.thread_replies, 0) as thread_replies, coalesce(m.active_members, 0) as active_members,
           coalesce(w.tasks_created, 0) as tasks_created, coalesce(w.tasks_started, 0) as tasks_started,
           coalesce(w.tasks_completed, 0) as tasks_completed, coalesce(w.tasks_canceled, 0) as tasks_canceled,
           coalesce(w.asana_tasks_completed, 0) as asana_tasks_completed,
           coalesce(w.linear_issues_completed, 0) as linear_issues_completed,
           coalesce(w.points_completed, 0)::double as points_completed, coalesce(w.closed, 0) as closed,
           coalesce(w.closed_started, 0) as closed_started
    from grid g left join m using (team, week) left join w using (team, week))
select * exclude (closed, closed_started),
       avg(tasks_completed) over (t rows between 3 preceding and current row) as throughput_4w,
       greatest(sum(tasks_started) over t - sum(closed_started) over t, 0) as wip,
       greatest(sum(tasks_created) over t - sum(closed) over t, 0) as open_tasks
from joined window t as (partition by team order by week)
order by team, week;

create or replace table marts.delivery_cycle_times as
select t.task_key, t.system, t.system_id, t.identifier, coalesce(t.team, 'Unassigned') as team, t.project_key,
       t.cycle_key, t.assignee_employee_key, e.team as assignee_team, t.priority, t.estimate, t.created_at, t.started_at,
       t.completed_at, timezone('UTC', t.completed_at)::date as completed_on,
       date_trunc('week', timezone('UTC', t.completed_at))::date as completed_week,
       epoch(t.completed_at - t.created_at) / 86400 as lead_time_days,
       greatest(epoch(t.completed_at - t.started_at) / 86400, 0) as cycle_time_days,
       t.due_on is not null and date_trunc('day', timezone('UTC', t.completed_at)) > t.due_on as is_late
from core.tasks t left join employee_team e on e.employee_key = t.assignee_employee_key
where t.state = 'done' and t.completed_at is not null;
