-- Peer of the `customer_marts` step: marts.support (day × priority × state × segment × region) and the customer
-- health score (usage, revenue, support load, CSAT, recency and opportunity components over trailing windows) at
-- as_of and 30 days before (marts.customer_health) and at every month end (marts.customer_health_history).
-- Left to the pandas step only: retention cohorts. Product usage is read from the Factors app sessions.

create or replace table marts.support as
with c as (
    select timezone('UTC', c.created_at) as created, coalesce(c.priority, 'unknown') as priority,
           coalesce(c.state, 'unknown') as state, coalesce(a.segment, 'Unknown') as segment,
           coalesce(a.region, 'Unknown') as region, c.*  exclude (priority, state)
    from core.conversations c left join core.accounts a using (account_key))
select date_trunc('day', created) as date, date_trunc('week', created) as week, priority, state, segment, region,
       count(*) as conversations, count(*) filter (where is_open) as open_conversations,
       count(closed_at) as closed_conversations, count(first_response_s) as first_responses,
       coalesce(sum(first_response_s), 0)::double as first_response_s_sum,
       coalesce(sum(time_to_close_s), 0)::double as time_to_close_s_sum, count(csat_rating) as csat_responses,
       coalesce(sum(csat_rating), 0)::double as csat_sum, count(*) filter (where csat_rating >= 4) as csat_satisfied,
       coalesce(sum(count_reopens), 0) as reopens,
       round(sum(first_response_s) / nullif(count(first_response_s), 0), 1) as avg_first_response_s,
       round(sum(time_to_close_s) / nullif(count(closed_at), 0), 1) as avg_time_to_close_s,
       round(sum(csat_rating) / nullif(count(csat_rating), 0), 3) as csat_avg,
       round(count(*) filter (where csat_rating >= 4) / nullif(count(csat_rating), 0), 4) as csat_satisfied_pct
from c group by all order by all;

create or replace temp table health_points as
with customers as (select account_key, min(month) as customer_since from core.revenue where is_active group by 1),
ends as (
    select timezone('UTC', getvariable('as_of')) as scored_at
    union select timezone('UTC', getvariable('as_of')) - interval 30 day
    union select m + interval 1 month - interval 1 second from range(
        (select min(month) from core.revenue), timezone('UTC', getvariable('as_of')), interval 1 month) t(m)
        where m + interval 1 month - interval 1 second < timezone('UTC', getvariable('as_of')))
select c.account_key, e.scored_at from customers c cross join ends e where c.customer_since <= e.scored_at;

create or replace temp table health_events as
select x.account_key, timezone('UTC', j."timestamp") as ts, 'usage' as kind, 1.0 as value
from raw_factors.journey_events j join core.accounts x on x.domain = j.account_domain
where j._sophia_deleted is not true and (j.display_name = 'App Session' or regexp_matches(j.page_url, '^https?://app\.'))
union all select account_key, timezone('UTC', created_at), 'conversation', is_priority::double
from core.conversations where account_key is not null
union all select account_key, timezone('UTC', created_at), 'rating', csat_rating
from core.conversations where account_key is not null and csat_rating is not null;

create or replace temp table health_scores as
with w as (
    select p.account_key, p.scored_at,
           count(*) filter (where e.kind = 'usage' and e.ts > p.scored_at - interval 30 day) as usage_30,
           count(*) filter (where e.kind = 'usage' and e.ts > p.scored_at - interval 120 day
                            and e.ts <= p.scored_at - interval 30 day) / 3.0 as usage_base,
           count(*) filter (where e.kind = 'usage') > 0 as used_before,
           count(*) filter (where e.kind = 'conversation' and e.ts > p.scored_at - interval 30 day) as n_30,
           count(*) filter (where e.kind = 'conversation' and e.ts > p.scored_at - interval 180 day
                            and e.ts <= p.scored_at - interval 30 day) / 5.0 as n_base,
           coalesce(sum(e.value) filter (where e.kind = 'conversation' and e.ts > p.scored_at - interval 30 day), 0)
               as priority_30,
           count(*) filter (where e.kind = 'rating' and e.ts > p.scored_at - interval 90 day) as ratings,
           sum(e.value) filter (where e.kind = 'rating' and e.ts > p.scored_at - interval 90 day) as rating_sum,
           max(e.ts) as last_touch
    from health_points p left join health_events e on e.account_key = p.account_key and e.ts <= p.scored_at
    group by all),
arr as (
    select p.account_key, p.scored_at,
           coalesce((select arr from core.revenue r where r.account_key = p.account_key and r.month <= p.scored_at
                     order by r.month desc limit 1), 0) as arr_now,
           coalesce((select arr from core.revenue r where r.account_key = p.account_key
                     and r.month <= p.scored_at - interval 90 day order by r.month desc limit 1), 0) as arr_then
    from health_points p),
opps as (
    select p.account_key, p.scored_at,
           max(case when o.type = 'expansion' and ((o.created_at <= p.scored_at and not (o.is_closed and o.close_date <= p.scored_at))
                   or (o.is_won and o.close_date <= p.scored_at and o.close_date > p.scored_at - interval 180 day)) then 1 end) as good,
           max(case when o.type = 'renewal' and o.is_closed and not o.is_won and o.close_date <= p.scored_at
                   and o.close_date > p.scored_at - interval 90 day then 1 end) as bad
    from health_points p join (select account_key, type, is_closed, is_won, timezone('UTC', created_at) as created_at,
                                      close_date from core.opportunities) o using (account_key)
    group by all),
c as (
    select w.*, a.arr_now, a.arr_then,
           case when usage_base > 0 then 100.0 * least(greatest(usage_30 / usage_base, 0), 1.25) / 1.25
                when usage_30 > 0 then 80.0 when used_before then 0.0 else 50.0 end as usage_score,
           case when arr_now <= 0 then 0.0 when arr_then > 0 then 100.0 * least(arr_now / arr_then, 1) else 100.0 end
               as revenue_score,
           least(greatest(100.0 / greatest((n_30 + 1.0) / (n_base + 1.0), 1.0) - 10.0 * priority_30, 0), 100)
               as support_load_score,
           case when ratings > 0 then (rating_sum / ratings - 1.0) / 4.0 * 100.0 else 75.0 end as csat_score,
           coalesce(100.0 * exp(-greatest(epoch(w.scored_at - last_touch) / 86400, 0) / 45.0), 0) as recency_score,
           case when o.bad = 1 then 0.0 when o.good = 1 then 100.0 else 60.0 end as opportunities_score
    from w join arr a using (account_key, scored_at) left join opps o using (account_key, scored_at))
select account_key, scored_at, round(usage_score, 1) as usage_score, round(revenue_score, 1) as revenue_score,
       round(support_load_score, 1) as support_load_score, round(csat_score, 1) as csat_score,
       round(recency_score, 1) as recency_score, round(opportunities_score, 1) as opportunities_score,
       round(0.3 * usage_score + 0.2 * revenue_score + 0.15 * support_load_score + 0.15 * csat_score
             + 0.1 * recency_score + 0.1 * opportunities_score, 1) as health_score,
       round(arr_now, 2) as arr, arr_now <= 0 as is_churned, usage_30 as product_page_views_30d,
       n_30 as conversations_30d, priority_30::bigint as priority_conversations_30d, ratings as csat_ratings_90d,
       round(rating_sum / nullif(ratings, 0), 2) as csat_avg_90d,
       round(epoch(scored_at - last_touch) / 86400, 1) as days_since_last_touch
from c;

create or replace table marts.customer_health as
select n.*, case when n.health_score >= 70 then 'healthy' when n.health_score >= 45 then 'watch' else 'at risk' end
           as band, b.health_score as health_score_30d_ago, round(n.health_score - b.health_score, 1) as health_change_30d,
       a.name as account_name, coalesce(a.segment, 'Unknown') as segment, coalesce(a.region, 'Unknown') as region
from health_scores n
left join health_scores b on b.account_key = n.account_key
    and b.scored_at = timezone('UTC', getvariable('as_of')) - interval 30 day
left join core.accounts a on a.account_key = n.account_key
where n.scored_at = timezone('UTC', getvariable('as_of')) order by n.health_score;

create or replace table marts.customer_health_history as
select h.*, case when h.health_score >= 70 then 'healthy' when h.health_score >= 45 then 'watch' else 'at risk' end
           as band, a.name as account_name, coalesce(a.segment, 'Unknown') as segment,
       coalesce(a.region, 'Unknown') as region
from health_scores h left join core.accounts a using (account_key)
where h.scored_at <> timezone('UTC', getvariable('as_of')) - interval 30 day
order by h.scored_at, h.account_key;
