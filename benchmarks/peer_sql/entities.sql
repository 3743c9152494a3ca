-- Peer of the `entities` step, in plain DuckDB SQL: core.employees/employee_xref, core.accounts/account_xref
-- and core.people/person_xref, resolved by the exact rules — normalised e-mail, cross-system CRM ids,
-- normalised registrable domain (free mail excluded), company-name key — with connected components over the
-- match graph as a recursive CTE. Left to the pandas step only: the fuzzy company-name fallback, Gong contact
-- links and same-name-at-account matches.

create or replace macro _em1(s) as regexp_replace(lower(trim(s)), '^mailto:', '');
create or replace macro _em2(t) as trim(coalesce(nullif(regexp_extract(t, '<([^<>]+)>\s*$', 1), ''), t));
create or replace macro norm_email(s) as
    case when regexp_full_match(_em2(_em1(s)), '[^@\s]+@[a-z0-9\-]+(\.[a-z0-9\-]+)+') then _em2(_em1(s)) end;
create or replace macro _dm(s) as trim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
    lower(trim(s)), '^[a-z][a-z0-9+.\-]*://', ''), '^[^/@]*@', ''), '[/?#].*$', ''), ':\d*$', ''), '.');
create or replace macro norm_domain(s) as case
    when regexp_full_match(_dm(s), '[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)+') then coalesce(
        nullif(regexp_extract(_dm(s), '([a-z0-9\-]+\.(ac|co|com|edu|gov|govt|ltd|ne|net|or|org|plc)\.[a-z]{2})$', 1), ''),
        nullif(regexp_extract(_dm(s), '([a-z0-9\-]+\.[a-z0-9\-]+)$', 1), '')) end;
create or replace macro free_mail(d) as d in ('aol.com', 'gmail.com', 'googlemail.com', 'hotmail.com', 'hotmail.co.uk',
    'hotmail.fr', 'icloud.com', 'live.com', 'mac.com', 'me.com', 'msn.com', 'outlook.com', 'proton.me', 'protonmail.com',
    'yahoo.com', 'yahoo.co.uk', 'yahoo.fr', 'yandex.ru', 'ymail.com', 'zoho.com', 'gmx.de', 'gmx.net', 'web.de',
    'mail.com', 'mail.ru', 'qq.com', '163.com', 'naver.com', 'fastmail.com', 'hey.com');
create or replace macro _nk(s) as trim(regexp_replace(replace(lower(strip_accents(s)), '&', ' and '), '[^a-z0-9]+', ' ', 'g'));
create or replace macro name_key(s) as nullif(regexp_replace(trim(regexp_replace(_nk(s),
    '(\s+(incorporated|inc|corporation|corp|company|co|limited|ltd|llc|llp|lp|plc|gmbh|ag|kg|se|sa|sas|sarl|srl|spa|bv|nv|ab|as|asa|oy|oyj|aktiebolag|kk|pty|pte|pvt|private|ltda|sl|kft|sro))+$',
    '')), '^the ', ''), '');

-- employees: every system's users, one employee per normalised e-mail ------------------------------------
create or replace temp table employee_records as
select system, system_id, norm_email(email) as email, full_name, title, department from (
    select 'salesforce' as system, id as system_id, email, name as full_name, title, department
    from raw_salesforce."user" where _sophia_deleted is not true
    union all select 'hubspot', id, email, trim(concat_ws(' ', first_name, last_name)), null, null
    from raw_hubspot.owners where _sophia_deleted is not true
    union all select 'gong', id, email_address, trim(concat_ws(' ', first_name, last_name)), title, null
    from raw_gong.users where _sophia_deleted is not true
    union all select 'intercom', id, email, name, job_title, null from raw_intercom.admins where _sophia_deleted is not true
    union all select 'slack', id, email, coalesce(real_name, name), title, null
    from raw_slack.users where _sophia_deleted is not true and is_bot is not true
    union all select 'asana', gid, email, name, null, null from raw_asana.users where _sophia_deleted is not true
    union all select 'linear', id, email, name, null, null from raw_linear.users where _sophia_deleted is not true
) where system_id is not null;

create or replace table core.employee_xref as
select 'emp_' || coalesce(email, system || ':' || system_id) as employee_key, system, system_id,
       case when count(*) over (partition by email) > 1 and email is not null then 'email' else 'single_source' end
           as match_rule
from employee_records;

create or replace table core.employees as
select x.employee_key,
       first(r.full_name order by r.system = 'salesforce' desc, r.system) filter (where r.full_name is not null) as full_name,
       first(r.email) filter (where r.email is not null) as email,
       first(r.title order by r.system = 'salesforce' desc) filter (where r.title is not null) as title,
       first(r.department) filter (where r.department is not null) as department,
       string_agg(distinct r.system, ',' order by r.system) as source_systems
from core.employee_xref x join employee_records r using (system, system_id)
group by x.employee_key;

-- accounts: records of five systems -------------------------------------------------------------------
create or replace temp table ns_links as
select entity, arg_max(account_id, n) as account_id from (
    select t.entity, o.account_id, count(*) as n
    from raw_netsuite."transaction" t join raw_salesforce.opportunity o on o.id = t.custbody_sf_opportunity
    where t._sophia_deleted is not true and o._sophia_deleted is not true and o.account_id is not null
    group by all) group by entity;

create or replace temp table account_records as
with r as (
    select 'salesforce' as system, id as system_id, name, website, industry, segment_c as segment, region_c as region,
           billing_country as country, number_of_employees::double as employee_count, annual_revenue,
           'salesforce' as owner_system, owner_id, try_cast(customer_since_c as timestamptz) as customer_since,
           try_cast(churn_date_c as timestamptz) as churned_at, created_date as created_at,
           last_modified_date as updated_at, null::varchar as link_system, null::varchar as link_id
    from raw_salesforce.account where _sophia_deleted is not true and is_deleted is not true
    union all by name
    select 'hubspot' as system, id as system_id, name, domain as website, industry, country,
           numberofemployees::double as employee_count, annualrevenue as annual_revenue, 'hubspot' as owner_system,
           hubspot_owner_id as owner_id, createdate as created_at, hs_lastmodifieddate as updated_at
    from raw_hubspot.companies where _sophia_deleted is not true and archived is not true
    union all by name
    select 'netsuite' as system, c.id as system_id, companyname as name, url as website,
           try_cast(firstsaledate as timestamptz) as customer_since, datecreated as created_at,
           lastmodifieddate as updated_at, case when l.account_id is not null then 'salesforce' end as link_system,
           l.account_id as link_id
    from raw_netsuite.customer c left join ns_links l on l.entity = c.id
    where c._sophia_deleted is not true and c.isperson is not true
    union all by name
    select 'intercom' as system, id as system_id, name, website, industry, size::double as employee_count,
           coalesce(remote_created_at, created_at) as created_at, updated_at, 'any' as link_system,
           company_id as link_id
    from raw_intercom.companies where _sophia_deleted is not true
    union all by name
    select 'factors' as system, account_domain as system_id, account_domain as website, min("timestamp") as created_at,
           max("timestamp") as updated_at
    from raw_factors.journey_events where _sophia_deleted is not true and account_domain is not null
    group by account_domain
)
select row_number() over (order by system, system_id) as row, *,
       case when not free_mail(norm_domain(website)) then norm_domain(website) end as domain,
       name_key(name) as name_key,
       case system when 'salesforce' then 0 when 'hubspot' then 1 when 'netsuite' then 2 when 'intercom' then 3
           else 4 end as rank
from r where system_id is not null and system_id <> '';

-- match edges, node = the record's domain group (records sharing a domain are one node)
create or replace temp table account_nodes as
select row, coalesce(min(row) over (partition by domain), row) as node, domain, name_key from account_records;

create or replace temp table account_edges as
with targets as (select row, system, system_id from account_records),
links as (select row, link_system, link_id from account_records where link_id is not null),
crm as (
    select l.row as a, t.row as b, 'crm_id' as rule from links l
    join targets t on (l.link_system = 'any' and t.system_id = l.link_id)
        or (l.link_system = t.system and (t.system_id = l.link_id
            or (t.system = 'salesforce' and left(t.system_id, 15) = left(l.link_id, 15))))
    where l.row <> t.row),
names as (  -- a name key counts where every record holding it has no domain or the same one
    select name_key from account_records where name_key is not null group by name_key
    having count(distinct domain) <= 1),
by_name as (
    select r.row as a, min(r.row) over (partition by r.name_key) as b, 'name' as rule
    from account_records r semi join names using (name_key))
select n1.node as a, n2.node as b, rule from (select * from crm union all select * from by_name) e
join account_nodes n1 on n1.row = e.a join account_nodes n2 on n2.row = e.b where n1.node <> n2.node;

create or replace temp table account_components as
with recursive edges as (select a, b from account_edges union select b, a from account_edges),
walk(node, comp) as (
    select distinct node, node from account_nodes
    union
    select e.b, w.comp from walk w join edges e on e.a = w.node)
select node, min(comp) as comp from walk group by node;

create or replace temp table accounts_resolved as
select r.*, 'acct_' || first(r.system || '_' || r.system_id order by r.rank, r.system_id) over (partition by c.comp)
           as account_key,
       case when count(*) over (partition by c.comp) = 1 then 'single_source'
            when exists (select 1 from account_edges e where e.rule = 'crm_id' and n.node in (e.a, e.b)) then 'crm_id'
            when r.domain is not null and count(*) over (partition by n.node) > 1 then 'domain'
            else 'name' end as match_rule
from account_records r join account_nodes n using (row) join account_components c using (node);

create or replace table core.account_xref as
select account_key, system, system_id, match_rule,
       case match_rule when 'crm_id' then 1.0 when 'domain' then 0.98 when 'name' then 0.9 else 1.0 end as confidence
from accounts_resolved order by account_key, system, system_id;

create or replace table core.accounts as
select a.account_key,
       first(a.name order by a.rank, a.updated_at desc) filter (where a.name is not null) as name,
       first(a.domain order by a.rank, a.updated_at desc) filter (where a.domain is not null) as domain,
       first(a.industry order by a.rank, a.updated_at desc) filter (where a.industry is not null) as industry,
       first(a.segment order by a.rank, a.updated_at desc) filter (where a.segment is not null) as segment,
       first(a.region order by a.rank, a.updated_at desc) filter (where a.region is not null) as region,
       first(a.country order by a.rank, a.updated_at desc) filter (where a.country is not null) as country,
       first(a.employee_count order by a.rank, a.updated_at desc) filter (where a.employee_count is not null)
           as employee_count,
       first(a.annual_revenue order by a.rank, a.updated_at desc) filter (where a.annual_revenue is not null)
           as annual_revenue,
       first(x.employee_key order by a.rank, a.updated_at desc) filter (where x.employee_key is not null)
           as owner_employee_key,
       first(a.customer_since order by a.rank, a.updated_at desc) filter (where a.customer_since is not null)
           as customer_since,
       first(a.churned_at order by a.rank, a.updated_at desc) filter (where a.churned_at is not null) as churned_at,
       min(a.created_at) as first_touch_at,
       min(a.system_id) filter (where a.system = 'salesforce') as salesforce_id,
       min(a.system_id) filter (where a.system = 'hubspot') as hubspot_id,
       min(a.system_id) filter (where a.system = 'netsuite') as netsuite_id,
       min(a.system_id) filter (where a.system = 'intercom') as intercom_id,
       string_agg(distinct a.system, ',') as source_systems,
       min(a.created_at) as created_at, max(a.updated_at) as updated_at
from accounts_resolved a
left join core.employee_xref x on x.system = a.owner_system and x.system_id = a.owner_id
group by a.account_key;
alter table core.accounts add column is_customer boolean;
update core.accounts set is_customer = customer_since is not null
    and (churned_at is null or churned_at > getvariable('as_of'));

-- people: contacts, leads, end users and identified visitors; one person per normalised e-mail ----------
create or replace temp table person_records as
with r as (
    select 'salesforce' as system, id as system_id, email, first_name, last_name, name as full_name, phone, title,
           lifecycle_stage_c as lifecycle_stage, 'salesforce' as account_system, account_id,
           created_date as created_at, last_modified_date as updated_at
    from raw_salesforce.contact where _sophia_deleted is not true and is_deleted is not true
    union all by name
    select 'hubspot' as system, id as system_id, email, firstname as first_name, lastname as last_name, phone,
           jobtitle as title, lifecyclestage as lifecycle_stage, 'hubspot' as account_system,
           associatedcompanyid as account_id, createdate as created_at, lastmodifieddate as updated_at
    from raw_hubspot.contacts where _sophia_deleted is not true and archived is not true
    union all by name
    select 'intercom' as system, id as system_id, email, split_part(trim(name), ' ', 1) as first_name,
           nullif(trim(substr(trim(name), length(split_part(trim(name), ' ', 1)) + 1)), '') as last_name,
           name as full_name, phone, role as lifecycle_stage, 'intercom' as account_system,
           nullif(regexp_extract(company_ids, '"([^"]+)"', 1), '') as account_id, created_at, updated_at
    from raw_intercom.contacts where _sophia_deleted is not true
    union all by name
    select 'factors' as system, user_id as system_id, arg_max(user_name, "timestamp") as email,
           'factors' as account_system, arg_max(account_domain, "timestamp") as account_id,
           min("timestamp") as created_at, max("timestamp") as updated_at
    from raw_factors.journey_events
    where _sophia_deleted is not true and is_anonymous is false and user_id is not null
          and norm_email(user_name) is not null
    group by user_id
)
select row_number() over (order by system, system_id) as row, * replace (norm_email(email) as email,
       coalesce(full_name, nullif(trim(concat_ws(' ', first_name, last_name)), '')) as full_name),
       case system when 'salesforce' then 0 when 'hubspot' then 1 when 'intercom' then 2 else 3 end as rank
from r where system_id is not null and system_id <> '';

create or replace temp table account_domains as
select domain, any_value(account_key) as account_key from core.accounts where domain is not null
group by domain having count(*) = 1;

create or replace temp table people_resolved as
select p.*,
       'per_' || coalesce(p.email, p.system || '_' || p.system_id) as person_key,
       case when p.email is not null and count(*) over (partition by p.email) > 1 then 'email' else 'single_source' end
           as match_rule,
       coalesce(x.account_key, d.account_key) as account_key
from person_records p
left join core.account_xref x on x.system = p.account_system and x.system_id = p.account_id
left join account_domains d on d.domain = split_part(p.email, '@', 2);

create or replace table core.person_xref as
select person_key, system, system_id, match_rule, case match_rule when 'email' then 0.99 else 1.0 end as confidence
from people_resolved order by person_key, system, system_id;

create or replace table core.people as
select person_key,
       first(account_key order by rank, updated_at desc) filter (where account_key is not null) as account_key,
       first(first_name order by rank, updated_at desc) filter (where first_name is not null) as first_name,
       first(last_name order by rank, updated_at desc) filter (where last_name is not null) as last_name,
       first(full_name order by rank, updated_at desc) filter (where full_name is not null) as full_name,
       first(email order by rank, updated_at desc) filter (where email is not null) as email,
       first(phone order by rank, updated_at desc) filter (where phone is not null) as phone,
       first(title order by rank, updated_at desc) filter (where title is not null) as title,
       first(lifecycle_stage order by rank, updated_at desc) filter (where lifecycle_stage is not null)
           as lifecycle_stage,
       min(system_id) filter (where system = 'salesforce') as salesforce_id,
       min(system_id) filter (where system = 'hubspot') as hubspot_id,
       min(system_id) filter (where system = 'intercom') as intercom_id,
       string_agg(distinct system, ',') as source_systems, min(created_at) as created_at, max(updated_at) as updated_at
from people_resolved group by person_key;
