-- Peer of the `finance_core` step: core.invoices (with billing cadence, service period and MRR),
-- core.invoice_lines and core.revenue (ratable recognition per month, MRR/ARR at each month end by an ASOF
-- join, ARR movements). Left to the pandas step only: co-terming of annual add-ons, budgets, expense lines.

create or replace table core.invoice_lines as
with inv as (
    select id from raw_netsuite."transaction" where _sophia_deleted is not true and trim(type) = 'CustInvc')
select 'invl_ns_' || l.transaction_id || '_' || l.line_id as invoice_line_key, 'inv_ns_' || l.transaction_id as invoice_key,
       l.transaction_id as netsuite_transaction_id, l.line_id, try_cast(l.linesequencenumber as bigint) as line_no,
       l.item as item_id, coalesce(l.memo, 'item ' || l.item) as item,
       case when regexp_matches(coalesce(l.memo, 'item ' || l.item),
           '(?i)onboarding|implementation|professional services|training|consulting|setup fee') then 'services'
           else 'subscription' end as revenue_type,
       -try_cast(l.quantity as double) as quantity, try_cast(l.rate as double) as rate,
       -try_cast(l.netamount as double) as amount, l.department as department_id,
       l.linecreateddate as created_at, l.linelastmodifieddate as updated_at
from raw_netsuite.transactionline l semi join inv on inv.id = l.transaction_id
where l._sophia_deleted is not true and coalesce(l.mainline::boolean, false) = false
      and coalesce(l.taxline::boolean, false) = false
order by invoice_key, line_no;

create or replace table core.invoices as
with t as (
    select t.*, ax.account_key as mapped_key, try_cast(foreigntotal as double) as total_,
           try_cast(foreignamountremaining as double) as remaining_,
           coalesce(try_cast(exchangerate as double), 1.0) as rate_,
           coalesce(case trim(split_part(status, ':', -1)) when 'A' then 'open' when 'B' then 'paid' when 'V' then 'void'
               end, 'open') as status_,
           trandate::timestamp as issued, duedate::timestamp as due, closedate::timestamp as closed,
           nullif(custbody_sf_opportunity, '') as opp
    from raw_netsuite."transaction" t
    left join core.account_xref ax on ax.system = 'netsuite' and ax.system_id = t.entity
    where t._sophia_deleted is not true and trim(t.type) = 'CustInvc'),
split as (
    select invoice_key, sum(amount) filter (where revenue_type = 'services') as services
    from core.invoice_lines group by 1),
base as (
    select 'inv_ns_' || t.id as invoice_key, t.id as netsuite_id, t.tranid as tran_id,
           coalesce(t.mapped_key, 'acc_ns_unmapped_' || t.entity) as account_key, t.mapped_key is not null
               as account_mapped, t.entity as netsuite_customer_id, 'opp_sf_' || t.opp as opportunity_key,
           t.opp as salesforce_opportunity_id, t.issued as issued_on, t.due as due_on,
           case when t.status_ = 'paid' then t.closed end as paid_on,
           case when t.status_ = 'open' and t.due < timezone('UTC', getvariable('as_of')) then 'overdue'
               else t.status_ end as status,
           t.currency, t.rate_ as exchange_rate, t.total_ as total,
           round(t.total_ - coalesce(t.remaining_, case when t.status_ = 'paid' then 0.0 else t.total_ end), 2)
               as amount_paid,
           coalesce(t.remaining_, case when t.status_ = 'paid' then 0.0 else t.total_ end) as amount_remaining,
           round(t.total_ * t.rate_, 2) as total_base,
           case when t.status_ = 'paid' then date_diff('day', t.issued, t.closed) end as days_to_pay,
           t.createddate as created_at, t.lastmodifieddate as updated_at,
           case when s.invoice_key is null then t.total_ else t.total_ - coalesce(s.services, 0) end as subscription,
           coalesce(s.services, 0.0) as services, o.amount as opp_amount
    from t left join split s on s.invoice_key = 'inv_ns_' || t.id
    left join raw_salesforce.opportunity o on o.id = t.opp),
cadence as (
    select *, case
        when opp_amount > 0 then subscription / opp_amount < 0.3
        else salesforce_opportunity_id is null or least(
            epoch(issued_on - lag(issued_on) over c), epoch(lead(issued_on) over c - issued_on)) / 86400 <= 45
        end as monthly
    from base window c as (partition by account_key, coalesce(salesforce_opportunity_id, '') order by issued_on))
select * exclude (subscription, services, opp_amount, monthly),
       round(subscription, 2) as subscription_amount, round(services, 2) as services_amount,
       case when monthly then 'monthly' else 'annual' end as billing, issued_on as service_start,
       issued_on + to_microseconds((case when monthly then 365.25 / 12 else 365.25 end * 86400e6)::bigint)
           as service_end,
       round(case when monthly then subscription else subscription / 12 end, 2) as mrr
from cadence order by issued_on, invoice_key;

create or replace table core.revenue as
with live as (select * from core.invoices where status <> 'void' and issued_on is not null),
grid as (
    select account_key, unnest(range(date_trunc('month', min(issued_on)),
           date_trunc('month', timezone('UTC', getvariable('as_of'))) + interval 1 day, interval 1 month)) as month
    from live group by account_key),
sched as (
    select account_key, m as month,
           sum(subscription_amount * greatest(epoch(least(service_end, m + interval 1 month) - greatest(service_start, m)), 0)
               / nullif(epoch(service_end - service_start), 0)) as subscription_revenue,
           sum(case when m = date_trunc('month', service_start) then services_amount else 0 end) as services_revenue
    from (select *, unnest(range(date_trunc('month', service_start), service_end, interval 1 month)) as m from live)
    group by all),
issued as (
    select account_key, date_trunc('month', issued_on) as month, sum(total) as invoiced_amount,
           count(*) as invoices_issued from live group by all),
inv as (
    select account_key, account_key || '|' || coalesce(salesforce_opportunity_id, '') as contract, issued_on as issued,
           max(service_end + interval 5 day) as ends, sum(mrr) as mrr from live group by all),
points as (
    select g.account_key, g.month, c.contract,
           least(g.month + interval 1 month - interval 1 second, timezone('UTC', getvariable('as_of'))) as at
    from grid g join (select distinct account_key, contract from inv) c using (account_key)),
mrr as (
    select p.account_key, p.month, sum(case when i.ends > p.at then i.mrr else 0 end) as mrr
    from points p asof left join inv i on i.contract = p.contract and p.at >= i.issued group by all),
frame as (
    select g.account_key, g.month, round(coalesce(s.subscription_revenue, 0), 2) as subscription_revenue,
           round(coalesce(s.services_revenue, 0), 2) as services_revenue,
           round(coalesce(i.invoiced_amount, 0), 2) as invoiced_amount, coalesce(i.invoices_issued, 0) as invoices_issued,
           round(coalesce(m.mrr, 0), 2) as mrr, round(coalesce(m.mrr, 0) * 12, 2) as arr
    from grid g left join sched s using (account_key, month) left join issued i using (account_key, month)
    left join mrr m using (account_key, month)),
moves as (
    select *, coalesce(lag(arr) over a, 0) as prev, arr > 0 as active,
           coalesce(sum((arr > 0)::int) over (a rows between unbounded preceding and 1 preceding), 0) > 0 as seen_before,
           min(case when arr > 0 then month end) over (partition by account_key) as first_active
    from frame window a as (partition by account_key order by month))
select account_key, month, round(subscription_revenue + services_revenue, 2) as recognized_revenue,
       subscription_revenue, services_revenue, invoiced_amount, invoices_issued, mrr, arr, round(prev, 2) as previous_arr,
       case when active and prev <= 0 and not seen_before then 'new' when active and prev <= 0 then 'reactivation'
            when not active and prev > 0 then 'churn' when active and arr - prev > 0.005 then 'expansion'
            when active and arr - prev < -0.005 then 'contraction' when active then 'flat' else 'inactive' end as movement,
       case when active and prev <= 0 and not seen_before then arr else 0 end as new_arr,
       case when active and prev > 0 and arr - prev > 0.005 then round(arr - prev, 2) else 0 end as expansion_arr,
       case when active and prev > 0 and arr - prev < -0.005 then round(prev - arr, 2) else 0 end as contraction_arr,
       case when not active and prev > 0 then prev else 0 end as churned_arr,
       case when active and prev <= 0 and seen_before then arr else 0 end as reactivation_arr,
       active as is_active, first_active as cohort_month, date_diff('month', first_active, month) as months_since_start
from moves order by account_key, month;
