-- Peer of the `sales_core` step: core.opportunities (Salesforce, plus HubSpot deals never synced to it) with
-- account/owner keys from the entity xrefs, core.opportunity_stage_history as validity intervals, and
-- core.opportunity_stages. Left to the pandas step only: activities, calls and touchpoints.

create or replace temp table opp_hubspot_link as
select hs_salesforceopportunityid as sf_id, min(id) as hubspot_id from raw_hubspot.deals
where _sophia_deleted is not true and hs_salesforceopportunityid is not null group by 1;

create or replace table core.opportunities as
with sf as (
    select 'opp_sf_' || o.id as opportunity_key, 'salesforce' as system, o.id as salesforce_id, l.hubspot_id,
           ax.account_key, o.account_id as account_salesforce_id, ex.employee_key as owner_employee_key,
           o.owner_id as owner_salesforce_id, o.name,
           regexp_replace(lower(trim(o.type)), '[^a-z0-9]+', '_', 'g') as type, o.amount::double as amount,
           o.stage_name as stage, o.probability::double as probability, o.expected_revenue::double as expected_revenue,
           o.forecast_category_name as forecast_category, o.is_closed, o.is_won, o.created_date as created_at,
           o.close_date::timestamp as close_date, o.lead_source, o.fiscal_year::bigint as fiscal_year,
           o.fiscal_quarter::bigint as fiscal_quarter, o.last_modified_date as updated_at,
           case when l.hubspot_id is null then 'salesforce' else 'salesforce,hubspot' end as source_systems
    from raw_salesforce.opportunity o
    left join opp_hubspot_link l on l.sf_id = o.id
    left join core.account_xref ax on ax.system = 'salesforce' and ax.system_id = o.account_id
    left join core.employee_xref ex on ex.system = 'salesforce' and ex.system_id = o.owner_id
    where o._sophia_deleted is not true),
hs as (
    select 'opp_hs_' || d.id as opportunity_key, 'hubspot' as system, null as salesforce_id, d.id as hubspot_id,
           null as account_key, null as account_salesforce_id, ex.employee_key as owner_employee_key,
           null as owner_salesforce_id, d.dealname as name,
           regexp_replace(lower(trim(case d.dealtype when 'newbusiness' then 'new_business'
               when 'existingbusiness' then 'expansion' else d.dealtype end)), '[^a-z0-9]+', '_', 'g') as type,
           d.amount, coalesce(p.stage_label, d.dealstage) as stage, d.hs_deal_stage_probability * 100 as probability,
           d.amount * d.hs_deal_stage_probability as expected_revenue,
           case when d.hs_is_closed and d.hs_is_closed_won then 'Closed' when d.hs_is_closed then 'Omitted'
               else 'Pipeline' end as forecast_category, d.hs_is_closed as is_closed, d.hs_is_closed_won as is_won,
           d.createdate as created_at, date_trunc('day', d.closedate::timestamp) as close_date, null as lead_source,
           year(d.closedate::timestamp) as fiscal_year, quarter(d.closedate::timestamp) as fiscal_quarter,
           d.hs_lastmodifieddate as updated_at, 'hubspot' as source_systems
    from raw_hubspot.deals d
    left join raw_hubspot.pipelines p on p.pipeline_id = d.pipeline and p.stage_id = d.dealstage
    left join core.employee_xref ex on ex.system = 'hubspot' and ex.system_id = d.hubspot_owner_id
    where d._sophia_deleted is not true and d.hs_salesforceopportunityid is null)
select * from sf union all by name select * from hs;

create or replace table core.opportunity_stage_history as
with closed_stages as (
    select stage, bool_or(is_won) as won from core.opportunities where is_closed group by stage),
h as (
    select 'oph_sf_' || r.id as history_key, r.id as salesforce_id, o.opportunity_key,
           r.opportunity_id as opportunity_salesforce_id, r.stage_name as stage, r.amount::double as amount,
           r.close_date::timestamp as close_date, r.probability::double as probability, r.forecast_category,
           ex.employee_key as changed_by_employee_key, r.created_date as valid_from
    from raw_salesforce.opportunity_history r
    join core.opportunities o on o.salesforce_id = r.opportunity_id
    left join core.employee_xref ex on ex.system = 'salesforce' and ex.system_id = r.created_by_id
    where r._sophia_deleted is not true)
select h.*,
       lead(valid_from) over w as valid_to,
       lead(valid_from) over w is null as is_current,
       row_number() over w - 1 as sequence,
       coalesce(lag(stage) over w is distinct from stage, true) as is_stage_change,
       case when c.won then 'won' when c.stage is not null then 'lost' else 'open' end as stage_type
from h left join closed_stages c using (stage)
window w as (partition by opportunity_key order by valid_from, salesforce_id);

alter table core.opportunities add column closed_at timestamptz;
alter table core.opportunities add column stage_type varchar;
update core.opportunities o set
    closed_at = case when o.is_closed then f.first_closed end,
    stage_type = case when o.is_closed and o.is_won then 'won' when o.is_closed then 'lost' else 'open' end
from (select opportunity_key, min(valid_from) filter (where stage_type <> 'open') as first_closed
      from core.opportunity_stage_history group by 1) f
where f.opportunity_key = o.opportunity_key;
update core.opportunities set stage_type = case when is_closed and is_won then 'won' when is_closed then 'lost'
    else 'open' end where stage_type is null;

create or replace table core.opportunity_stages as
with seen as (
    select stage, probability, stage_type from core.opportunity_stage_history
    union all select stage, probability, stage_type from core.opportunities),
s as (select stage, median(probability) as probability, first(stage_type) as stage_type from seen
      where stage is not null group by stage)
select stage, row_number() over (order by case stage_type when 'won' then 1 when 'lost' then 2 else 0 end,
           probability, stage) as stage_order, stage_type, probability, stage_type <> 'open' as is_closed,
       stage_type = 'won' as is_won
from s;
