-- Peer of the `sales_marts` step: marts.opportunities (with account and owner dimensions), marts.pipeline
-- (weekly snapshots of every open opportunity rebuilt from its stage history) and marts.bookings.
-- Left to the pandas step only: stage conversion, sales effectiveness, rep performance and the marketing marts.

create or replace table marts.opportunities as
select o.*, a.name as account_name, a.segment, a.region, a.industry, e.full_name as owner_name,
       null::varchar as owner_team,
       date_trunc('week', timezone('UTC', o.created_at)) as created_week,
       date_trunc('month', timezone('UTC', o.created_at)) as created_month,
       coalesce(f.amount, o.amount) as initial_amount,
       epoch(o.closed_at - o.created_at) / 86400 as cycle_days
from core.opportunities o
left join core.accounts a using (account_key)
left join core.employees e on e.employee_key = o.owner_employee_key
left join (select opportunity_key, arg_min(amount, valid_from) as amount from core.opportunity_stage_history
           group by 1) f using (opportunity_key);

create or replace table marts.pipeline as
with intervals as (  -- the current interval carries the opportunity's current values
    select h.opportunity_key,
           case when h.is_current and o.stage is not null then o.stage else h.stage end as stage,
           case when h.is_current and o.stage_type is not null then o.stage_type else h.stage_type end as stage_type,
           case when h.is_current and o.amount is not null then o.amount else h.amount end as amount,
           case when h.is_current and o.probability is not null then o.probability else h.probability end as probability,
           case when h.is_current and o.forecast_category is not null then o.forecast_category
               else h.forecast_category end as forecast_category,
           case when h.is_current and o.close_date is not null then o.close_date else h.close_date end as close_date,
           h.valid_from, h.valid_to
    from core.opportunity_stage_history h join core.opportunities o using (opportunity_key)
    union all
    select opportunity_key, stage, stage_type, amount, probability, forecast_category, close_date,
           created_at, case when is_closed then coalesce(closed_at, timezone('UTC', close_date)) end
    from core.opportunities o
    where not exists (select 1 from core.opportunity_stage_history h where h.opportunity_key = o.opportunity_key)),
open_intervals as (select * from intervals where stage_type = 'open' and valid_from is not null),
weeks as (
    select week, least(timezone('UTC', week + interval 7 day), getvariable('as_of')) as snapshot_at
    from range((select date_trunc('week', timezone('UTC', min(valid_from))) from open_intervals),
               date_trunc('week', timezone('UTC', getvariable('as_of'))) + interval 1 day, interval 7 day) t(week))
select w.week, w.snapshot_at, w.snapshot_at = getvariable('as_of') as is_current_week, i.opportunity_key, i.stage,
       s.stage_order, i.amount, i.probability, i.amount * coalesce(i.probability, 0) / 100 as weighted_amount,
       i.forecast_category, i.close_date, epoch(w.snapshot_at - o.created_at) / 86400 as age_days,
       o.account_key, o.account_name, o.segment, o.region, o.industry, o.owner_employee_key, o.owner_name,
       o.owner_team, o.type, o.lead_source
from open_intervals i
join weeks w on w.snapshot_at >= i.valid_from
    and w.snapshot_at < coalesce(i.valid_to, getvariable('as_of') + interval 1 day)
join marts.opportunities o on o.opportunity_key = i.opportunity_key
left join core.opportunity_stages s on s.stage = i.stage
order by w.week, i.opportunity_key;

create or replace table marts.bookings as
select opportunity_key, salesforce_id, close_date, date_trunc('month', close_date) as close_month,
       date_trunc('quarter', close_date) as close_quarter, closed_at, amount,
       account_key is not null and row_number() over (partition by account_key
           order by close_date, closed_at, opportunity_key) = 1 as is_new_logo,
       created_at, cycle_days, account_key, account_name, segment, region, industry, owner_employee_key, owner_name,
       owner_team, type, lead_source
from marts.opportunities where is_won
order by close_date, closed_at, opportunity_key;
